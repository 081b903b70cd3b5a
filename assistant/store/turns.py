"""Writing the message tree: a turn's two messages, the reply's streamed and final text, new
branches, compaction summaries, and what a crash left streaming.

Each function runs inside a write transaction its caller,
:class:`~assistant.store.repository.Store`, has begun (``BEGIN IMMEDIATE``) and takes the time
from the store's clock (``now``), so creation order is total. The turn path (:func:`begin`,
:func:`save_partial`, :func:`finalize`) runs the statements of :class:`TurnSQL`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn, cast

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from assistant.errors import RequestError, StorageError
from assistant.store import db
from assistant.store.queries import (
    MESSAGE_COLUMNS,
    C,
    M,
    message_from_row,
    message_values,
    not_found,
)
from assistant.store.records import Message, Turn
from assistant.store.schema import format_time, parse_time

Clock = Callable[[], datetime]
TITLE_LENGTH = 60
ACTIVE = object()  # "continue from the conversation's active leaf"

_INSERT_MESSAGE = insert(M)
_TOUCH = update(C).where(C.c.id == bindparam("cid")).values(
    updated=bindparam("at", type_=C.c.updated.type))


def make_title(text: str) -> str:
    """A short title from the first user message: its first line, cut at a word."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if len(line) <= TITLE_LENGTH:
        return line or "New conversation"
    cut = line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] or line[: TITLE_LENGTH - 1]
    return cut.rstrip(" ,.;:") + "…"


def new_id() -> str:
    return uuid.uuid4().hex


class TurnSQL:
    """The statements run on every turn (and every half second while one streams).

    Plain SQL compiled once for the engine's driver (:class:`~assistant.store.db.Prepared`):
    values go in as stored (timestamps :func:`format_time`, JSON encoded here). RETURNING
    needs SQLite 3.35 or PostgreSQL.
    """

    def __init__(self, engine: Engine) -> None:
        def prepare(sql: str) -> db.Prepared:
            return db.prepare(engine, sql)

        self.leaf_of = prepare(
            "SELECT active_leaf_id FROM conversations WHERE id = :cid AND owner = :owner")
        self.owner_of = prepare("SELECT conversation_id FROM messages WHERE id = :mid")
        # The daemon's owner's leave ``owner`` to its default (0), as before users existed.
        columns = "id, title, created, updated, archived, pinned, model, settings, active_leaf_id"
        values = ":cid, :title, :created, :updated, :no, :no, :model, :settings, :leaf"
        self.new_conversation = prepare(
            f"INSERT INTO conversations ({columns}) VALUES ({values})")
        self.new_owned_conversation = prepare(
            f"INSERT INTO conversations ({columns}, owner) VALUES ({values}, :owner)")
        # Columns left out take their defaults: no skill, route or timings, no tokens.
        self.new_message = prepare(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, status, model, "
            "created) VALUES (:id, :cid, :parent, :role, :content, :status, :model, :created)")
        self.move_leaf = prepare(
            "UPDATE conversations SET active_leaf_id = :leaf, updated = :at WHERE id = :cid")
        self.touch = prepare("UPDATE conversations SET updated = :at WHERE id = :cid")
        self.save_partial = prepare(
            "UPDATE messages SET content = :text WHERE id = :mid AND status = 'streaming'")
        self.finalize = prepare(
            "UPDATE messages SET status = :status, content = :content, skill = :skill, "
            "route = :route, model = COALESCE(:model, model), prompt_tokens = :prompt_tokens, "
            "completion_tokens = :completion_tokens, timings = :timings, "
            "confidence = :confidence, citations = :citations "
            "WHERE id = :mid AND status = 'streaming' "
            "RETURNING conversation_id, parent_id, role, model, created")


def _json(value: dict[str, Any] | None) -> str | None:
    """As the ORM's JSON columns store it (None is NULL)."""
    return None if value is None else json.dumps(value)


# -- the turn lifecycle -------------------------------------------------------------------------


def begin(
    conn: Connection, sql: TurnSQL, now: Clock, conversation_id: str | None, text: str,
    parent: object, *, model: str | None, title_hint: str | None = None,
    settings: dict[str, Any] | None = None, owner: int = 0,
) -> Turn:
    """The user's message and a ``streaming`` reply under ``parent`` (or :data:`ACTIVE`), in
    a conversation of ``owner`` (another's is not found)."""
    user_id, reply_id = new_id(), new_id()
    asked_at, replied_at = now(), now()
    asked, replied = format_time(asked_at), format_time(replied_at)
    created = conversation_id is None
    if conversation_id is None:
        conversation_id = new_id()
        # Born with its leaf: the reply is inserted next, in the same transaction.
        fields = {"cid": conversation_id, "title": title_hint or make_title(text),
                  "created": asked, "updated": replied, "no": False, "model": model,
                  "settings": json.dumps(settings) if settings else "{}", "leaf": reply_id}
        if owner:
            sql.new_owned_conversation.run(conn, **fields, owner=owner)
        else:
            sql.new_conversation.run(conn, **fields)
        leaf = None
    else:
        found = sql.leaf_of.rows(conn, cid=conversation_id, owner=owner)
        if not found:
            raise not_found("conversation", conversation_id)
        leaf = found[0][0]
    if parent is ACTIVE:
        parent_id = leaf
    else:
        parent_id = cast(str | None, parent)
        if parent_id is not None:
            holder = sql.owner_of.rows(conn, mid=parent_id)
            if not holder or holder[0][0] != conversation_id:
                raise not_found(f"message in conversation {conversation_id}", parent_id)
    sql.new_message.run_many(conn, [
        {"id": user_id, "cid": conversation_id, "parent": parent_id, "role": "user",
         "content": text, "status": "complete", "model": None, "created": asked},
        {"id": reply_id, "cid": conversation_id, "parent": user_id, "role": "assistant",
         "content": "", "status": "streaming", "model": model, "created": replied},
    ])
    if not created:
        sql.move_leaf.run(conn, cid=conversation_id, leaf=reply_id, at=replied)
    user = Message(id=user_id, conversation_id=conversation_id, parent_id=parent_id,
                   role="user", content=text, status="complete", created=asked_at)
    reply = Message(id=reply_id, conversation_id=conversation_id, parent_id=user_id,
                    role="assistant", content="", status="streaming", created=replied_at,
                    model=model)
    return Turn(conversation_id, user, reply, created_conversation=created)


def save_partial(conn: Connection, sql: TurnSQL, message_id: str, text: str) -> None:
    if sql.save_partial.run(conn, mid=message_id, text=text) == 0:
        explain_not_streaming(conn, message_id)


def finalize(
    conn: Connection, sql: TurnSQL, now: Clock, message_id: str, *, status: str,
    content: str, skill: str | None, route: dict[str, Any] | None, model: str | None,
    prompt_tokens: int, completion_tokens: int, timings: dict[str, Any] | None,
    confidence: float | None = None, citations: list[dict[str, Any]] | None = None,
) -> Message:
    route_json, timings_json = _json(route), _json(timings)
    citations_json = None if citations is None else json.dumps(citations)
    found = sql.finalize.rows(
        conn, mid=message_id, status=status, content=content, skill=skill, route=route_json,
        model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        timings=timings_json, confidence=confidence, citations=citations_json,
    )
    if not found:
        explain_not_streaming(conn, message_id)
    conversation_id, parent_id, role, stored_model, created = found[0]
    sql.touch.run(conn, cid=conversation_id, at=format_time(now()))
    return Message(
        id=message_id, conversation_id=conversation_id, parent_id=parent_id, role=role,
        content=content, status=status, created=parse_time(created), skill=skill,
        model=stored_model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        # Read back from what was stored, as every other read of the message is.
        route=None if route_json is None else json.loads(route_json),
        timings=None if timings_json is None else json.loads(timings_json),
        confidence=confidence,
        citations=None if citations_json is None else json.loads(citations_json),
    )


def explain_not_streaming(conn: Connection, message_id: str) -> NoReturn:
    status = conn.execute(select(M.c.status).where(M.c.id == message_id)).scalar()
    if status is None:
        raise not_found("message", message_id)
    raise StorageError(f"Message {message_id} is already finalized ({status}).")


def recover(conn: Connection) -> int:
    result = conn.execute(update(M).where(M.c.status == "streaming").values(status="incomplete"))
    return int(result.rowcount)


# -- branching ----------------------------------------------------------------------------------


def add_reply(conn: Connection, now: Clock, old: Message, model: str | None) -> Turn:
    """A ``streaming`` sibling of the reply ``old``, made the active leaf."""
    user = message_from_row(conn.execute(
        select(*MESSAGE_COLUMNS).where(M.c.id == old.parent_id)).one())
    reply = Message(id=new_id(), conversation_id=old.conversation_id, parent_id=user.id,
                    role="assistant", content="", status="streaming", created=now(),
                    model=model or old.model)
    conn.execute(insert(M).values(**message_values(reply)))
    conn.execute(update(C).where(C.c.id == old.conversation_id)
                 .values(active_leaf_id=reply.id, updated=reply.created))
    return Turn(old.conversation_id, user, reply)


def set_active_leaf(conn: Connection, conversation_id: str, leaf: str) -> None:
    conn.execute(update(C).where(C.c.id == conversation_id).values(active_leaf_id=leaf))


# -- compaction summaries -----------------------------------------------------------------------


def add_summary(
    conn: Connection, now: Clock, before_message_id: str, text: str, *, model: str | None,
    prompt_tokens: int, completion_tokens: int, timings: dict[str, Any] | None,
) -> Message:
    before = conn.execute(
        select(*MESSAGE_COLUMNS).where(M.c.id == before_message_id)).first()
    if before is None:
        raise not_found("message", before_message_id)
    summary = Message(
        id=new_id(), conversation_id=before.conversation_id,
        parent_id=before.parent_id, role="summary", content=text, status="complete",
        created=now(), model=model, prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, timings=timings,
    )
    conn.execute(_INSERT_MESSAGE, message_values(summary))
    # Every branch from the same parent shares the history the summary stands for: all of
    # them move under it, so an edit made earlier stays reachable beside ``before``.
    siblings = (M.c.parent_id == before.parent_id) if before.parent_id is not None else (
        M.c.parent_id.is_(None) & (M.c.conversation_id == before.conversation_id))
    conn.execute(update(M).where(siblings, M.c.id != summary.id)
                 .values(parent_id=summary.id))
    conn.execute(_TOUCH, {"cid": summary.conversation_id, "at": summary.created})
    return summary


def set_summary_undone(conn: Connection, now: Clock, message_id: str, undone: bool) -> Message:
    row = conn.execute(select(M.c.role).where(M.c.id == message_id)).first()
    if row is None:
        raise not_found("message", message_id)
    if row.role != "summary":
        raise RequestError(f"Message {message_id} is not a summary; only summaries "
                           "can be undone.", code="not_a_summary", param="id")
    found = conn.execute(
        update(M).where(M.c.id == message_id)
        .values(status="undone" if undone else "complete")
        .returning(*MESSAGE_COLUMNS)).one()
    message = message_from_row(found)
    conn.execute(_TOUCH, {"cid": message.conversation_id, "at": now()})
    return message
