"""Where message searches run: threads of their own, a few at a time, a bounded line waiting.

A search may spend its whole time budget (``search.timeout``) on CPU. Run in the event loop's
default executor (a handful of threads, shared with every turn's store writes), a few long
searches held all its threads and stalled chat turns behind them. So at most
``search.concurrency`` searches run, each on an anyio worker thread under a limiter of their
own; ``search.queue`` more wait for one, and past that a search is refused at once with 503
``queue_full`` and Retry-After. The caller starts the time budget before the wait, so a search
that waited has that much less to run.

Not a ModelQueue: the bound is on worker threads, which anyio's limiter already queues and counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from assistant.config import SearchSettings
from assistant.errors import QueueFull

T = TypeVar("T")


class SearchGate:
    def __init__(self, settings: SearchSettings) -> None:
        self.concurrency = settings.concurrency
        self.queue = settings.queue
        self._limiter = anyio.CapacityLimiter(settings.concurrency)
        # Searches let in and not ended, counted as they are let in: the limiter counts one
        # only once its task reaches it, so searches arriving together all saw room.
        self._in = 0

    @property
    def running(self) -> int:
        return int(self._limiter.borrowed_tokens)

    @property
    def waiting(self) -> int:
        return max(0, self._in - self.running)

    async def run(self, search: Callable[[], T]) -> T:
        """``search()`` on a search thread, once one is free; :class:`QueueFull` when
        ``queue`` searches are already waiting. Cancelled while it runs, it waits for the
        thread: the caller stops the search itself (its ``cancel`` event)."""
        if self._in >= self.concurrency + self.queue:
            raise QueueFull(
                f"search is busy: {self.running} running, {self.waiting} waiting "
                "(search.concurrency, search.queue)",
                retry_after=max(1, self.waiting // self.concurrency))
        self._in += 1
        try:
            return await anyio.to_thread.run_sync(search, limiter=self._limiter)
        finally:
            self._in -= 1
