"""Correcting a turn's route: ``POST /api/messages/{message_id}/reroute {"skill": ...}``.

The user says "this should have gone to <skill>". The utterance becomes a routing correction
(:meth:`Router.correct`, so similar turns follow it from now on), and the turn runs again with
that skill as a regenerated sibling of the reply: a regenerate through
:class:`~assistant.daemon.turns.TurnService` with ``method="correction"``, so it gets the same
history (compaction summary included), partial saves and finalize as any turn. The old reply is
kept on its branch. The correction is the caller's: a user's corrections route that user's
turns alone (:class:`~assistant.daemon.route_policy.RoutePolicy`).
The answer streams as SSE exactly like ``/api/turns``: ``route`` (method
``correction``, with the new reply's ids and ``replaces``), ``progress``/``notice``/``delta``,
then ``done`` or ``error``.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from assistant.daemon.deps import LocalPeerDep, OwnerDep, StoreDep, TurnsDep
from assistant.daemon.sse import stream_response
from assistant.daemon.turns import TurnRequest
from assistant.errors import RequestError
from assistant.models.backend import GenerationParams

router = APIRouter()


class RerouteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    skill: str = Field(min_length=1, max_length=64)
    model: str | None = Field(None, max_length=256,
                              description="the model that answers, whatever the skill")
    chat_model: str | None = Field(
        None, max_length=256,
        description="the model when the skill has none of its own (default: the "
                    "conversation's)")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    seed: int | None = None


@router.post("/api/messages/{message_id}/reroute")
async def reroute(message_id: str, body: RerouteBody, store: StoreDep,
                  turns: TurnsDep, local: LocalPeerDep, owner: OwnerDep) -> StreamingResponse:
    turns.routing.check_skill(body.skill)  # a 400 for an unknown skill, before anything is stored
    reply = await asyncio.to_thread(store.message, message_id)
    if reply.role != "assistant" or reply.parent_id is None:
        raise RequestError(f"message {message_id} is not an assistant reply; reroute a reply",
                           code="not_reroutable", param="message_id")
    user = await asyncio.to_thread(store.message, reply.parent_id)
    await turns.routing.correct(user.content, body.skill, owner)
    # The new skill answers with its own model, if it has one, unless the caller names one;
    # else with the conversation's (not the old reply's: that may be the old skill's own).
    conversation = (await asyncio.to_thread(store.conversations, [reply.conversation_id]))[0]
    events = turns.run(TurnRequest(
        text=user.content, skill=body.skill, method="correction", model=body.model,
        chat_model=body.chat_model or conversation.model,
        regenerate=message_id,
        params=GenerationParams(max_tokens=body.max_tokens, temperature=body.temperature,
                                seed=body.seed),
        local=local, owner=owner,
    ))
    return stream_response(events, await anext(events))
