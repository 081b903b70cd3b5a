"""One user turn, end to end: route it, run the skill, stream events, store the result.

Events are dicts with a ``type``: ``route`` first, then ``progress`` and ``delta`` pieces, and
last ``done`` or ``error``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.errors import AssistantError
from assistant.models.backend import ChatMessage, Delta, GenerationParams

if TYPE_CHECKING:
    from assistant.daemon.server import Daemon


@dataclass
class TurnRequest:
    text: str
    conversation_id: str | None = None
    skill: str | None = None
    model: str | None = None
    params: GenerationParams = field(default_factory=GenerationParams)


class TurnService:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def model_for(self, request: TurnRequest) -> str:
        return request.model or self.daemon.settings.models.default

    async def run(self, request: TurnRequest) -> AsyncIterator[dict[str, Any]]:
        model = self.model_for(request)
        started = time.perf_counter()
        yield {"type": "route", "skill": "chat", "method": "fallback", "score": None,
               "runner_up": None, "runner_up_score": None,
               "explanation": "chat answers every turn until skills are routed"}
        messages = [ChatMessage("user", request.text)]
        last = Delta("")
        try:
            async for delta in self.daemon.models.chat(model, messages, request.params):
                last = delta
                if delta.text:
                    yield {"type": "delta", "text": delta.text}
        except AssistantError as exc:
            yield {"type": "error", "code": type(exc).__name__, "message": exc.message}
            return
        yield {"type": "done", "model": model, "finish_reason": last.finish_reason,
               "usage": {"prompt_tokens": last.prompt_tokens,
                         "completion_tokens": last.completion_tokens},
               "timings": {**last.timings, "turn_s": time.perf_counter() - started}}

    async def openai_turn(
        self, messages: list[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        async for delta in self.daemon.models.chat(
            self.daemon.settings.models.default, messages, params
        ):
            yield delta
