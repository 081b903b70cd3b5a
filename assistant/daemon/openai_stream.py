"""The replies of a generation as OpenAI's API gives them: server-sent chunks as they come
(:func:`sse_response`), or gathered whole (:func:`collect`), with ``finish_reason`` and
``usage``. Shared by ``/v1/chat/completions`` and ``/v1/completions``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from assistant.error_codes import http_error
from assistant.errors import AssistantError
from assistant.models.backend import Delta, ToolCall, close_stream


@dataclasses.dataclass
class Gathered:
    """One reply of a stream, whole: its text, calls and logprobs (None when not asked
    for), and the delta that ended it."""

    text: str = ""
    calls: list[ToolCall] = dataclasses.field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None
    end: Delta = dataclasses.field(default_factory=lambda: Delta(""))


async def collect(request: Request, first: Delta, stream: AsyncIterator[Delta],
                  ) -> list[Gathered]:
    """The replies of ``stream`` (after ``first``), whole, in order. A client that goes away
    stops the generation."""
    async def gather() -> list[Gathered]:
        replies: dict[int, Gathered] = {}

        def add(delta: Delta) -> None:
            reply = replies.setdefault(delta.index, Gathered())
            reply.text += delta.text
            reply.calls.extend(delta.tool_calls)
            if delta.logprobs is not None:
                reply.logprobs = (reply.logprobs or []) + delta.logprobs
            if delta.finish_reason is not None:
                reply.end = delta

        add(first)
        async for delta in stream:
            add(delta)
        return [replies[i] for i in sorted(replies)]

    task = asyncio.ensure_future(gather())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.1)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                break
        return await task
    finally:
        if not task.done():
            task.cancel()
        await close_stream(stream)


Choice = Callable[[int, str, str | None, list[dict[str, Any]] | None], dict[str, Any]]
"""A streamed chunk's choice, made of its reply's index, its text, finish_reason (None but in
the reply's last) and the logprobs of its tokens (None when not asked for)."""


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    """OpenAI's ``stream_options``: the usage in a chunk of its own, and padding of random
    length on every chunk (``obfuscation``) so that chunk sizes do not tell the text."""

    include_usage: bool = False
    include_obfuscation: bool = False


def sse_response(first: Delta, stream: AsyncIterator[Delta], head: dict[str, Any],
                 choice: Choice, options: StreamOptions,
                 opening: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> StreamingResponse:
    """``stream`` (after ``first``) as OpenAI's server-sent chunks, each ``head`` (id, object,
    created, model) with one ``choice``; ``opening``, a first chunk's delta for each reply; as
    ``options`` ask; then ``[DONE]``. ``headers`` go with the response's."""
    return StreamingResponse(_sse_chunks(first, stream, head, choice, options, opening),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", **(headers or {})})


async def _sse_chunks(first: Delta, stream: AsyncIterator[Delta], head: dict[str, Any],
                      choice: Choice, options: StreamOptions, opening: dict[str, Any] | None,
                      ) -> AsyncIterator[bytes]:
    def chunk(**payload: Any) -> bytes:
        if options.include_obfuscation:
            payload["obfuscation"] = secrets.token_urlsafe(24)[: secrets.randbelow(33)]
        return f"data: {json.dumps({**head, **payload}, ensure_ascii=False)}\n\n".encode()

    ends: list[Delta] = []
    calls: dict[int, int] = {}  # calls made so far, by reply
    try:
        pending: Delta | None = first
        while pending is not None:
            index = pending.index
            if index not in calls:
                calls[index] = 0
                if opening is not None:
                    yield chunk(choices=[{"index": index, "delta": opening,
                                          "finish_reason": None}])
            if pending.text or (pending.logprobs and pending.finish_reason is None):
                yield chunk(choices=[choice(index, pending.text, None, pending.logprobs)])
            for call in pending.tool_calls:
                # The call's head, then its arguments: the pieces OpenAI's SDK joins by index.
                head_delta = call_json(call)
                head_delta["function"]["arguments"] = ""
                for delta in ({"index": calls[index], **head_delta},
                              {"index": calls[index], "function": {"arguments": call.arguments}}):
                    yield chunk(choices=[{"index": index, "delta": {"tool_calls": [delta]},
                                          "finish_reason": None}])
                calls[index] += 1
            if pending.finish_reason is not None:
                ends.append(pending)
                yield chunk(choices=[choice(index, "", finish_reason(pending, calls[index] > 0),
                                            pending.logprobs)])
            pending = await anext(stream, None)
    except AssistantError as exc:
        yield f"data: {json.dumps(stream_error(exc))}\n\n".encode()
    finally:
        await close_stream(stream)
    if options.include_usage:
        yield chunk(choices=[], usage=usage([Gathered(end=end) for end in ends]))
    yield b"data: [DONE]\n\n"


def stream_error(exc: AssistantError) -> dict[str, Any]:
    """The chunk that ends a stream ``exc`` broke: code ``stream_error``, as clients know it,
    with the HTTP ``status`` the error stands for (503: worth retrying) and its
    ``retry_after`` (seconds), since the 200 was sent before it happened."""
    status, _, headers = http_error(exc)
    error: dict[str, Any] = {"message": exc.message, "type": "server_error",
                             "code": "stream_error", "status": status}
    if "Retry-After" in headers:
        error["retry_after"] = int(headers["Retry-After"])
    return {"error": error}


def finish_reason(last: Delta, called: bool = False) -> str:
    if last.finish_reason in ("length", "content_filter"):  # content_filter: a guard's doing
        return last.finish_reason
    return "tool_calls" if called else "stop"


def usage(replies: list[Gathered]) -> dict[str, Any]:
    """Tokens of the prompt (read once) and of every reply; with a local model, OpenAI's
    ``prompt_tokens_details.cached_tokens``: those of the prompt a sequence or a saved state
    held already, not read again."""
    prompt = max((r.end.prompt_tokens for r in replies), default=0)
    completion = sum(r.end.completion_tokens for r in replies)
    counted: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                               "total_tokens": prompt + completion}
    cached = [r.end.timings["cached_tokens"] for r in replies if "cached_tokens" in r.end.timings]
    if cached:
        counted["prompt_tokens_details"] = {"cached_tokens": int(max(cached))}
    return counted


def call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}
