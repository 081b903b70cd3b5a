"""Correcting a turn's route: ``POST /api/messages/{message_id}/reroute {"skill": ...}``.

The user says "this should have gone to <skill>". The utterance becomes a routing correction
(:meth:`Router.correct`, so similar turns follow it from now on), and the turn runs again with
that skill as a regenerated sibling of the reply (:meth:`Store.regenerate`): the old reply is
kept on its branch. The answer streams as SSE exactly like ``/api/turns``: ``route`` (method
``correction``, with the new reply's ids), ``progress``/``notice``/``delta``, then ``done`` or
``error``. The new reply is finalized once, also when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from assistant.daemon.turns import SAVE_EVERY_S, TurnRequest
from assistant.errors import AssistantError, DaemonError, RequestError, StorageUnavailable
from assistant.models.backend import ChatMessage, GenerationParams, close_stream

if TYPE_CHECKING:
    from assistant.daemon.server import Daemon
    from assistant.store.repository import Store

router = APIRouter()


class RerouteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    skill: str = Field(min_length=1, max_length=64)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    seed: int | None = None


@router.post("/api/messages/{message_id}/reroute")
async def reroute(message_id: str, body: RerouteBody, request: Request) -> StreamingResponse:
    daemon: Daemon = request.app.state.daemon
    store: Store | None = request.app.state.store
    if store is None:
        raise StorageUnavailable(
            "the conversation store is unavailable; see `assistant daemon status`")
    await daemon.turns.route("", body.skill)  # waits for start-up; 400 for an unknown skill
    reply = await asyncio.to_thread(store.message, message_id)
    if reply.role != "assistant" or reply.parent_id is None:
        raise RequestError(f"message {message_id} is not an assistant reply; reroute a reply",
                           code="not_reroutable", param="message_id")
    path = await asyncio.to_thread(store.history, reply.parent_id)
    user = path[-1]
    router_ = daemon.turns.router
    if router_ is None:
        raise DaemonError("the daemon is still starting", "Try again in a moment.")
    await asyncio.to_thread(router_.correct, user.content, body.skill)
    stored = await asyncio.to_thread(store.regenerate, message_id, model=reply.model)
    history = [ChatMessage(m.role, m.content)  # type: ignore[arg-type]
               for m in path[:-1] if m.role in {"user", "assistant", "system"} and m.content]
    turn = TurnRequest(
        text=user.content, conversation_id=stored.conversation_id, skill=body.skill,
        model=reply.model, persist=False, history=history,
        params=GenerationParams(max_tokens=body.max_tokens, temperature=body.temperature,
                                seed=body.seed),
    )
    ids = {"conversation_id": stored.conversation_id,
           "message_id": stored.assistant_message.id, "user_message_id": user.id,
           "replaces": message_id}
    return StreamingResponse(_sse(_run(daemon, store, turn, ids)),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _run(daemon: Daemon, store: Store, turn: TurnRequest,
               ids: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
    """The turn service's events with the new reply's ids, its text saved as it grows."""
    reply_id = ids["message_id"]
    text: list[str] = []
    status, route, usage, model = "cancelled", None, {}, turn.model
    last_save = time.monotonic()
    events = daemon.turns.run(turn)
    try:
        async for event in events:
            kind = event["type"]
            if kind == "route":
                event = {**event, "method": "correction",
                         "explanation": f"you re-routed this turn to '{turn.skill}'", **ids}
                route = {k: v for k, v in event.items() if k not in {"type", *ids}}
            elif kind == "delta":
                text.append(event["text"])
                if time.monotonic() - last_save > SAVE_EVERY_S:
                    last_save = time.monotonic()
                    await asyncio.to_thread(store.save_partial, reply_id, "".join(text))
            elif kind == "done":
                status, usage, model = event["status"], event.get("usage", {}), event["model"]
                event = {**event, **ids}
            elif kind == "error":
                status = "error"
                event = {**event, **ids}
            yield event
    finally:
        await close_stream(events)
        with contextlib.suppress(AssistantError):
            await asyncio.shield(asyncio.to_thread(
                store.finalize, reply_id, status=status, content="".join(text),
                skill=turn.skill, route=route, model=model,
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            ))


async def _sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            data = json.dumps(event, ensure_ascii=False)
            yield f"event: {event['type']}\ndata: {data}\n\n".encode()
    finally:
        await close_stream(events)
