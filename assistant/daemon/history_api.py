"""The conversation history over HTTP: ``/api/conversations``, ``/api/search``, export, import.

The daemon includes :data:`router`; handlers get the open :class:`~assistant.store.Store`
through the :data:`~assistant.daemon.deps.StoreDep` dependency (503 ``storage_unavailable``
when it is not open). Handlers are plain functions, so FastAPI runs the (blocking) store calls
in its thread pool. Errors are raised, and rendered once by the app's handlers
(:mod:`assistant.error_codes`): 503 ``storage_unavailable`` (with Retry-After) when the disk is
full or the database read-only, 400 ``invalid_import`` for a bad import file, 404 ``not_found``
for an unknown id.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from assistant.daemon.deps import ModelsDep, SearchGateDep, SettingsDep, StoreDep
from assistant.daemon.disconnect import unless_disconnected
from assistant.errors import RequestError
from assistant.store import Store
from assistant.store.exchange import conversation_to_dict, message_to_dict
from assistant.store.records import SearchHit
from assistant.store.search import check_query

router = APIRouter(prefix="/api", tags=["history"])


def _hit(hit: SearchHit) -> dict[str, Any]:
    return {
        "conversation_id": hit.conversation_id, "conversation_title": hit.conversation_title,
        "message_id": hit.message_id, "role": hit.role, "skill": hit.skill,
        "created": hit.created.isoformat(), "snippet": hit.snippet, "rank": hit.rank,
    }


@router.get("/conversations")
def list_conversations(
    store: StoreDep,
    archived: Literal["false", "true", "all"] = "false",
    pinned: bool | None = None,
    skill: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> Any:
    which = {"false": False, "true": True, "all": None}[archived]
    return {"conversations": [
        {
            "id": c.id, "title": c.title, "created": c.created.isoformat(),
            "updated": c.updated.isoformat(), "archived": c.archived, "pinned": c.pinned,
            "model": c.model, "message_count": c.message_count,
        }
        for c in store.list_conversations(
            archived=which, pinned=pinned, skill=skill, since=since, until=until,
            limit=limit, offset=offset,
        )
    ]}


def _conversation_body(store: Store, conversation_id: str) -> dict[str, Any]:
    conv = store.get_conversation(conversation_id)
    body = conversation_to_dict(conv)
    body["active_path"] = [m.id for m in conv.active_path]
    return body


@router.get("/conversations/{conversation_id}")
def get_conversation(store: StoreDep, conversation_id: str) -> Any:
    """The whole tree (``messages``, each with ``parent_id``) and the active path's ids."""
    return _conversation_body(store, conversation_id)


class ConversationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    archived: bool | None = None
    pinned: bool | None = None
    active_message_id: str | None = None  # switch to the branch through this message


@router.patch("/conversations/{conversation_id}")
def patch_conversation(store: StoreDep, conversation_id: str, patch: ConversationPatch) -> Any:
    if patch.title is not None:
        store.rename(conversation_id, patch.title)
    if patch.archived is not None:
        store.archive(conversation_id, patch.archived)
    if patch.pinned is not None:
        store.pin(conversation_id, patch.pinned)
    if patch.active_message_id is not None:
        if store.message(patch.active_message_id).conversation_id != conversation_id:
            raise RequestError("That message is not in this conversation.", status=404,
                               code="not_found", param="active_message_id")
        store.switch_branch(patch.active_message_id)
    return _conversation_body(store, conversation_id)


@router.delete("/conversations/{conversation_id}", status_code=204)
async def delete_conversation(store: StoreDep, models: ModelsDep,
                              conversation_id: str) -> Response:
    """Delete it, and the model states saved from it: nothing of it is left on disk."""
    await run_in_threadpool(store.delete, conversation_id)
    await models.forget_states(conversation_id)
    return Response(status_code=204)


@router.delete("/conversations/{conversation_id}/states", status_code=204)
async def forget_states(store: StoreDep, models: ModelsDep, conversation_id: str) -> Response:
    """Drop the model states saved from a conversation (its messages stay). A user may name
    only a conversation of theirs (else 404); the owner any id, also of a conversation
    already deleted (``assistant history delete`` deletes it first, then asks this)."""
    if store.owner:
        await run_in_threadpool(store.get_conversation, conversation_id)
    await models.forget_states(conversation_id)
    return Response(status_code=204)


@router.get("/messages/{message_id}")
def get_message(store: StoreDep, message_id: str) -> Any:
    message = store.message(message_id)
    return message_to_dict(message) | {"conversation_id": message.conversation_id}


@router.post("/messages/{message_id}/undo")
def undo_summary(store: StoreDep, message_id: str) -> Any:
    """Take a compaction summary out of the model's context: the turns it stood for return."""
    return message_to_dict(store.set_summary_undone(message_id))


@router.post("/messages/{message_id}/redo")
def redo_summary(store: StoreDep, message_id: str) -> Any:
    """Put an undone compaction summary back in force."""
    return message_to_dict(store.set_summary_undone(message_id, undone=False))


@router.get("/search")
async def search(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    gate: SearchGateDep,
    q: str = Query(..., min_length=1),
    skill: str | None = None,
    limit: int = Query(20, ge=1, le=200),
) -> Any:
    """Ranked hits; matches in ``snippet`` are wrapped in ``<mark>``…``</mark>``. ``q`` is
    capped (``[search]``: 400 naming the limit); the search stops past ``search.timeout``
    (400 ``search_timeout``; the time it waited for a search thread counts) or when the
    client disconnects; past ``search.queue`` waiting, 503 ``queue_full``."""
    started = time.monotonic()
    limits = settings.search
    check_query(q, max_chars=limits.max_query_chars, max_terms=limits.max_terms)
    cancel = threading.Event()
    hits = await unless_disconnected(request, gate.run(lambda: store.search(
        q, skill=skill, limit=limit, highlight=("<mark>", "</mark>"),
        timeout=limits.timeout, started=started, cancel=cancel)), on_disconnect=cancel.set)
    return {"hits": [_hit(h) for h in hits]}


def _export(store: Store, ids: list[str] | None, fmt: str) -> Response:
    """Streamed, a few conversations read at a time as the client takes them: an export of
    a large history (or many left unread) holds one batch each, not the whole."""
    chunks = store.export_chunks(ids, format=fmt)  # an unknown id is a 404 before any byte
    media = "text/markdown; charset=utf-8" if fmt == "md" else "application/json"
    return StreamingResponse((chunk.encode("utf-8") for chunk in chunks), media_type=media)


@router.get("/conversations/{conversation_id}/export")
def export_conversation(
    store: StoreDep, conversation_id: str, format: Literal["json", "md"] = "json"
) -> Response:
    return _export(store, [conversation_id], format)


@router.get("/export")
def export_all(store: StoreDep, format: Literal["json", "md"] = "json") -> Response:
    return _export(store, None, format)


@router.post("/import")
async def import_conversations(
    request: Request, store: StoreDep, format: Literal["auto", "json", "chatgpt"] = "auto"
) -> Any:
    """The request body is the file: our JSON export or ChatGPT's conversations.json."""
    data = await request.body()
    result = await run_in_threadpool(store.import_data, data, format=format)
    return {"imported": list(result.imported), "skipped": list(result.skipped)}
