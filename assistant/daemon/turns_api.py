"""The native turn API used by the CLI and the TUI: one POST, a stream of typed SSE events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from assistant.daemon.turns import TurnRequest
from assistant.models.backend import GenerationParams, close_stream

if TYPE_CHECKING:
    from assistant.daemon.server import Daemon

router = APIRouter()


class TurnBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=1_000_000)
    conversation_id: str | None = Field(None, max_length=64)
    skill: str | None = Field(None, max_length=64)
    model: str | None = Field(None, max_length=256)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    seed: int | None = None


@router.post("/api/turns")
async def turn(body: TurnBody, request: Request) -> StreamingResponse:
    daemon: Daemon = request.app.state.daemon
    turn_request = TurnRequest(
        text=body.text, conversation_id=body.conversation_id, skill=body.skill,
        model=body.model,
        params=GenerationParams(max_tokens=body.max_tokens, temperature=body.temperature,
                                seed=body.seed),
    )
    events = daemon.turns.run(turn_request)
    # The first event (route) comes before the answer, so that an unavailable store or an
    # unknown skill is an HTTP error rather than a broken stream.
    first = await anext(events)
    return StreamingResponse(_sse(first, events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def _sse(
    first: dict[str, Any], events: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[bytes]:
    async def chain() -> AsyncIterator[dict[str, Any]]:
        yield first
        async for event in events:
            yield event

    try:
        async for event in chain():
            data = json.dumps(event, ensure_ascii=False)
            yield f"event: {event['type']}\ndata: {data}\n\n".encode()
    finally:
        await close_stream(events)
