"""Work that stops when its client goes away: a request's job, cancelled on disconnect.

Starlette runs a route to its end even when the client has left; a job that costs seconds of
CPU (a large embedding, a search) would run on for nobody. :func:`unless_disconnected` runs the
job as a task and polls the connection meanwhile; when the client has gone, it cancels the
task (the job's own cancellation then reaches the model host or SQLite) and raises
:class:`~assistant.errors.RequestError` 499, which no one reads but the access log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request

from assistant.errors import RequestError

T = TypeVar("T")
POLL_S = 0.1


async def unless_disconnected(request: Request, job: Awaitable[T],
                              on_disconnect: Callable[[], None] | None = None) -> T:
    """``job``'s result; if the client disconnects first, ``on_disconnect`` is called (to stop
    work a task cancellation cannot reach, such as a thread), the task cancelled and
    RequestError 499 ``client_disconnected`` raised."""
    task = asyncio.ensure_future(job)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=POLL_S)
            if not task.done() and await request.is_disconnected():
                if on_disconnect is not None:
                    on_disconnect()
                task.cancel()
                raise RequestError("the client disconnected; its request was stopped",
                                   status=499, code="client_disconnected")
        return task.result()
    finally:
        if not task.done():
            task.cancel()
