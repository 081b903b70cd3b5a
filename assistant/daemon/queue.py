"""A bounded FIFO queue per model (or other work): ``parallel`` run, ``limit`` wait, more are
refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from assistant.errors import QueueFull


class ModelQueue:
    def __init__(self, name: str, parallel: int, limit: int, busy: str = "",
                 settings: str = "") -> None:
        self.name = name
        self.parallel = parallel
        self.limit = limit
        self.busy = busy or f"model {name!r} is busy"  # how a refusal begins
        self.settings = settings  # the settings that set parallel and limit, for a refusal
        self._slots = asyncio.Semaphore(parallel)
        self.waiting = 0
        self.running = 0

    @property
    def depth(self) -> int:
        return self.waiting + self.running

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a generation slot. Raises :class:`QueueFull` when ``limit`` already wait."""
        # By the sum: a waiter woken by a slot let go counts as waiting until it runs.
        if self.depth >= self.parallel + self.limit:
            raise QueueFull(
                f"{self.busy}: {self.running} running, {self.waiting} waiting"
                + (f" ({self.settings})" if self.settings else ""),
                retry_after=max(1, self.waiting // max(self.parallel, 1)),
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()
