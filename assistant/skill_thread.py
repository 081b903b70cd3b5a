"""A skill run on a thread of its own, with an event loop of its own, so that a blocking call in
it (``time.sleep``, a blocking HTTP client, a long CPU loop) stalls only its own turn: the
daemon's loop goes on serving every other client, and the skill timeout still fires.

:class:`SkillThread` runs the skill; :class:`ThreadedContext` is the context it sees: every
call that reaches the daemon's parts (``generate``, ``embed``, ``count_tokens``,
``context_length``, ``documents.search``) is carried over to the daemon's loop and its answer
back, ``progress`` is queued there, and ``sentences`` and ``detect_language`` run in the skill's
thread. Cancelling the skill (the timeout, a client gone) cancels its task in its own loop, and
with it any call it was waiting for on the daemon's loop; a skill stuck in a blocking call
finishes that call on its thread, and its late events are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from assistant.models.backend import ChatMessage, GenerationParams
from assistant.skills import DocumentSearch, Event, SkillContext

T = TypeVar("T")

_END = object()


class SkillThread:
    """One skill run: a daemon thread running ``make()`` in a fresh event loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False

    def start(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        threading.Thread(target=self._main, args=(make,), name=f"skill:{self.name}",
                         daemon=True).start()

    def _main(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        loop = asyncio.new_event_loop()
        try:
            with self._lock:
                if self._cancelled:
                    return
                self._loop, self._task = loop, loop.create_task(make())
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
        finally:
            with self._lock:
                self._loop = None
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def cancel(self) -> None:
        """Cancel the skill's task in its loop (at its next await, once a blocking call in it
        has returned); before it started, it never starts."""
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                with contextlib.suppress(RuntimeError):  # its loop has just closed
                    self._loop.call_soon_threadsafe(self._task.cancel)


def thread_safe(loop: asyncio.AbstractEventLoop, put: Callable[[T], None]) -> Callable[[T], None]:
    """``put`` called on ``loop`` from any thread (dropped once the loop has closed)."""

    def call(item: T) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(put, item)

    return call


class ThreadedContext(SkillContext):
    """``ctx`` as a skill on a :class:`SkillThread` sees it; ``daemon`` is the daemon's loop.
    Attributes of ``ctx`` beyond :class:`SkillContext` (``params``, ``model``…) read through."""

    def __init__(self, ctx: SkillContext, daemon: asyncio.AbstractEventLoop,
                 sink: Callable[[Event], None]) -> None:
        self._ctx = ctx
        self._daemon = daemon
        self._sink = thread_safe(daemon, sink)
        self.history = ctx.history
        self.config = ctx.config
        self.documents = None if ctx.documents is None else _Documents(ctx.documents, self)

    def __getattr__(self, name: str) -> Any:
        if name == "_ctx":
            raise AttributeError(name)
        return getattr(self._ctx, name)

    @property
    def in_model_call(self) -> bool:
        return self._ctx.in_model_call

    async def on_daemon(self, call: Coroutine[Any, Any, T]) -> T:
        """Run ``call`` on the daemon's loop and await its answer from this thread's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, self._daemon))

    async def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams | None = None,
        model: str | None = None,
    ) -> AsyncIterator[str]:
        stream = self._ctx.generate(messages, params, model)

        async def step() -> Any:
            try:
                return await anext(stream)
            except StopAsyncIteration:
                return _END

        async def close() -> None:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while (piece := await self.on_daemon(step())) is not _END:
                yield piece
        finally:
            with contextlib.suppress(Exception):
                await self.on_daemon(close())

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.on_daemon(self._ctx.embed(texts))

    async def count_tokens(
        self, messages: Sequence[ChatMessage], model: str | None = None
    ) -> int:
        return await self.on_daemon(self._ctx.count_tokens(messages, model))

    async def context_length(self, model: str | None = None) -> int | None:
        return await self.on_daemon(self._ctx.context_length(model))

    def sentences(self, text: str, lang: str | None = None) -> list[str]:
        return self._ctx.sentences(text, lang)

    def detect_language(self, text: str) -> str:
        return self._ctx.detect_language(text)


class _Documents:
    def __init__(self, documents: DocumentSearch, ctx: ThreadedContext) -> None:
        self._documents, self._ctx = documents, ctx

    async def search(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        return await self._ctx.on_daemon(self._documents.search(query, k))
