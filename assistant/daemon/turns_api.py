"""The native turn API used by the CLI and the TUI: one POST, a stream of typed SSE events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from assistant.daemon.deps import LocalPeerDep, OwnerDep, TurnsDep
from assistant.daemon.sse import stream_response
from assistant.daemon.turns import TurnRequest
from assistant.models.backend import GenerationParams

router = APIRouter()


class TurnBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field("", max_length=1_000_000)
    conversation_id: str | None = Field(None, max_length=64)
    skill: str | None = Field(None, max_length=64)
    model: str | None = Field(None, max_length=256,
                              description="the model that answers, whatever the skill")
    chat_model: str | None = Field(
        None, max_length=256,
        description="the model for chat and for a skill with no model of its own")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    seed: int | None = None
    regenerate: str | None = Field(None, max_length=64,
                                   description="an assistant message id to answer again")
    edit: str | None = Field(None, max_length=64,
                             description="a user message id to replace with text, branching")


    @model_validator(mode="after")
    def _has_text(self) -> TurnBody:
        if not self.text.strip() and not self.regenerate:
            raise ValueError("text: say something (only a regenerate request may omit text)")
        return self


@router.get("/api/skills")
async def skills(turns: TurnsDep) -> dict[str, Any]:
    """Every skill, with its description (for completion menus) and its breaker's state:
    ``available``, ``retrying`` (the next turn is a trial) or ``disabled`` (turns go to chat)."""
    host = turns.plugins
    return {"skills": [{"name": name, "description": skill.description,
                        "state": host.breaker(name).state}
                       for name, skill in sorted(host.skills.items())]}


@router.post("/api/turns")
async def turn(body: TurnBody, turns: TurnsDep, local: LocalPeerDep,
               owner: OwnerDep) -> StreamingResponse:
    turn_request = TurnRequest(
        text=body.text, conversation_id=body.conversation_id, skill=body.skill,
        model=body.model, chat_model=body.chat_model, regenerate=body.regenerate, edit=body.edit,
        params=GenerationParams(max_tokens=body.max_tokens, temperature=body.temperature,
                                seed=body.seed),
        carried=frozenset(body.model_fields_set), local=local, owner=owner,
    )
    events = turns.run(turn_request)
    # The first event (route) comes before the answer, so that an unavailable store or an
    # unknown skill is an HTTP error rather than a broken stream.
    return stream_response(events, await anext(events))

