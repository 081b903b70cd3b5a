"""Server-sent events: the one encoder of the daemon's native event streams.

Every stream (a turn, a re-route, document ingestion) is a series of ``event: <type>`` /
``data: <json>`` frames of the events typed in :mod:`assistant.wire`; :func:`stream_response`
answers with one, and the client reads them back with :func:`assistant.wire.parse_event`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from assistant.models.backend import close_stream
from assistant.wire import TurnEvent, WireEvent


def encode(event: WireEvent) -> bytes:
    """One event as an SSE frame, named after its ``type``."""
    data = json.dumps(event, ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def stream_response(events: AsyncIterator[TurnEvent], first: TurnEvent | None = None,
                    ) -> StreamingResponse:
    """Stream ``events`` (after ``first``, an event already pulled so that its errors were
    HTTP errors); the source is closed when the client goes away."""

    async def frames() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield encode(first)
            async for event in events:
                yield encode(event)
        finally:
            await close_stream(events)

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
