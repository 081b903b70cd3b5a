"""Where message searches run: threads of their own, a few at a time, a bounded line waiting.

A search may spend its whole time budget (``search.timeout``) on CPU. Run in the event loop's
default executor (a handful of threads, shared with every turn's store writes), a few long
searches held all its threads and stalled chat turns behind them. So at most
``search.concurrency`` searches run, each on a thread of the gate's own; ``search.queue``
more wait for one, and past that a search is refused at once with 503 ``queue_full`` and
Retry-After. The caller starts the time budget before the wait, so a search that waited has
that much less to run.

Those threads run at background priority (:mod:`assistant.priority`): two long searches
beside a reply being written slowed its decoding several times over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from assistant.config import SearchSettings
from assistant.daemon.queue import ModelQueue
from assistant.priority import background

T = TypeVar("T")


class SearchGate:
    def __init__(self, settings: SearchSettings) -> None:
        self._threads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="search",
                                           initializer=background)
        self._queue = ModelQueue("search", settings.concurrency, settings.queue,
                                 "search is busy", "search.concurrency, search.queue")

    @property
    def running(self) -> int:
        return self._queue.running

    @property
    def waiting(self) -> int:
        return self._queue.waiting

    async def run(self, search: Callable[[], T]) -> T:
        """``search()`` on a search thread, once one is free; :class:`QueueFull` when
        ``queue`` searches are already waiting. Cancelled while it waits, it never runs;
        cancelled while it runs, it waits for the thread: the caller stops the search itself
        (its ``cancel`` event)."""
        async with self._queue.slot():
            ended = asyncio.wrap_future(self._threads.submit(search))
            try:
                return await asyncio.shield(ended)
            except asyncio.CancelledError:
                await _ending(ended)
                raise


async def _ending(ended: asyncio.Future[T]) -> None:
    """Wait for a search thread whose caller was cancelled, through further cancels, and
    take its outcome (a search stopped by its cancel event raises): nothing left unread."""
    while not ended.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([ended])
    if not ended.cancelled():
        ended.exception()
