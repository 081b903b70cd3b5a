"""A turn's reply as it is produced: the usage of its generations and its stored record.

:class:`Metered` wraps the backend a skill is given: it adds up what every generation used,
knows whether a model call is running (the skill timeout does not blame the skill for a wait
on the model), and tells a refusal caused by the caller's request from one the skill caused;
:class:`ReplyRecorder` keeps the text as it streams, saves it every :data:`SAVE_EVERY_S`, and
finalizes the stored reply exactly once, also when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.errors import AssistantError, RequestError, SkillFailed
from assistant.models.backend import (
    Backend,
    ChatMessage,
    Delta,
    GenerationParams,
    ModelInfo,
    closing_stream,
)

if TYPE_CHECKING:
    from assistant.store.repository import Store

log = logging.getLogger("assistant.turns")

SAVE_EVERY_S = 0.5


class Metered(Backend):
    """Passes chat, completions and embeddings through to ``inner`` and adds up the usage of
    every generation.

    ``carried`` names the fields the turn's request carried and ``own_chars`` the length of
    the text and history it gave: a model's refusal (a 4xx :class:`RequestError`) is the
    caller's only when it names a field the request carried, or when the prompt past the
    context is mostly the request's own text; otherwise the skill asked for something the
    model refuses, and it is the skill's failure (:class:`SkillFailed`). ``carried`` None
    leaves every refusal the caller's.
    """

    def __init__(self, inner: Backend, on_done: Callable[[str, Delta], None], *,
                 carried: frozenset[str] | None = None, own_chars: int = 0) -> None:
        self.inner = inner
        self.on_done = on_done
        self.carried = carried
        self.own_chars = own_chars
        self.in_flight = 0  # model calls awaiting the model now

    def models(self) -> list[ModelInfo]:
        return self.inner.models()

    def reports_logprobs(self, model: str) -> bool:
        return self.inner.reports_logprobs(model)

    def chat(
        self, model: str, messages: list[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        size = sum(len(m.content) for m in messages)
        return self._metered(model, self.inner.chat(model, messages, params), size)

    def complete(
        self, model: str, prompt: str, params: GenerationParams
    ) -> AsyncIterator[Delta]:
        return self._metered(model, self.inner.complete(model, prompt, params), len(prompt))

    async def _metered(self, model: str, deltas: AsyncIterator[Delta], size: int,
                       ) -> AsyncIterator[Delta]:
        async with closing_stream(deltas) as stream:
            while True:
                self.in_flight += 1  # only while waiting on the model, not on the skill
                try:
                    delta = await anext(stream)
                except StopAsyncIteration:
                    break
                except RequestError as exc:
                    raise self._refused(exc, size) from exc
                finally:
                    self.in_flight -= 1
                if delta.finish_reason is not None:
                    self.on_done(model, delta)
                yield delta

    def _refused(self, exc: RequestError, size: int) -> AssistantError:
        if self.carried is None or not 400 <= exc.status < 500:
            return exc
        if exc.code == "context_length_exceeded":
            if self.own_chars * 2 >= size:  # mostly what the caller sent
                return exc
        elif exc.param is not None and exc.param in self.carried:
            return exc
        return SkillFailed(f"the model refused the skill's request: {exc.message}")

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        self.in_flight += 1
        try:
            return await self.inner.embed(model, texts)
        finally:
            self.in_flight -= 1

    async def count_tokens(self, model: str, messages: list[ChatMessage]) -> int:
        return await self.inner.count_tokens(model, messages)

    async def context_length(self, model: str) -> int | None:
        return await self.inner.context_length(model)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generations: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    model: str | None = None  # the model of the last generation

    def add(self, model: str, delta: Delta) -> None:
        self.model = model
        self.prompt_tokens += delta.prompt_tokens
        self.completion_tokens += delta.completion_tokens
        self.generations += 1
        self.timings = dict(delta.timings)


class ReplyRecorder:
    """The reply as it streams: its text, saved every :data:`SAVE_EVERY_S`, finalized once.

    Without a store (a turn the client keeps itself) it only gathers the text.
    """

    def __init__(self, store: Store | None, message_id: str | None) -> None:
        self.store = store if message_id is not None else None
        self.message_id = message_id
        self.parts: list[str] = []
        self._saved_at = time.monotonic()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def add(self, piece: str) -> None:
        self.parts.append(piece)
        if self.store is None or time.monotonic() - self._saved_at <= SAVE_EVERY_S:
            return
        self._saved_at = time.monotonic()
        try:
            await asyncio.to_thread(self.store.save_partial, str(self.message_id), self.text)
        except AssistantError as exc:  # the reply goes on; finalize writes it all
            log.warning("saving partial text failed", extra={"error": str(exc)})

    async def finalize(self, **fields: Any) -> None:
        """Commit the final state (``status``, ``skill``, ``route``, ``model``, usage, timings);
        shielded, so that a client going away cannot leave the reply ``streaming``."""
        if self.store is None:
            return
        with contextlib.suppress(AssistantError):
            await asyncio.shield(asyncio.to_thread(
                self.store.finalize, str(self.message_id), content=self.text, **fields))
