"""Correcting a turn's route: ``POST /api/messages/{message_id}/reroute {"skill": ...}``.

The user says "this should have gone to <skill>". The utterance becomes a routing correction
(:meth:`Router.correct`, so similar turns follow it from now on), and the turn runs again with
that skill as a regenerated sibling of the reply: a regenerate through
:class:`~assistant.daemon.turns.TurnService` with ``method="correction"``, so it gets the same
history (compaction summary included), partial saves and finalize as any turn. The old reply is
kept on its branch. The answer streams as SSE exactly like ``/api/turns``: ``route`` (method
``correction``, with the new reply's ids and ``replaces``), ``progress``/``notice``/``delta``,
then ``done`` or ``error``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from assistant.daemon.sse import stream_response
from assistant.daemon.turns import TurnRequest
from assistant.errors import RequestError, StorageUnavailable
from assistant.models.backend import GenerationParams

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
    turns = daemon.turns
    await turns.check_skill(body.skill)  # waits for start-up; 400 for an unknown skill
    reply = await asyncio.to_thread(store.message, message_id)
    if reply.role != "assistant" or reply.parent_id is None:
        raise RequestError(f"message {message_id} is not an assistant reply; reroute a reply",
                           code="not_reroutable", param="message_id")
    user = await asyncio.to_thread(store.message, reply.parent_id)
    await turns.correct(user.content, body.skill)
    events = turns.run(TurnRequest(
        text=user.content, skill=body.skill, method="correction", model=reply.model,
        regenerate=message_id,
        params=GenerationParams(max_tokens=body.max_tokens, temperature=body.temperature,
                                seed=body.seed),
    ))
    return stream_response(events, await anext(events))
