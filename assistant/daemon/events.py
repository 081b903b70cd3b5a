"""Streaming what a background job reports while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")


async def while_running(job: asyncio.Task[Any], queue: asyncio.Queue[T]) -> AsyncIterator[T]:
    """Yield what ``job`` puts in ``queue`` as it runs, then raise its error, if any.

    A consumer that stops early (a client gone) cancels the job.
    """
    waiter: asyncio.Future[T] | None = None
    try:
        while not job.done() or not queue.empty():
            waiter = asyncio.ensure_future(queue.get())
            await asyncio.wait({job, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                yield waiter.result()
            else:
                waiter.cancel()
        job.result()
    finally:
        job.cancel()
        if waiter is not None:
            waiter.cancel()
