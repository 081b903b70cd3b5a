"""What the model host sends of a reply, piece by piece: text held back while it may still
become a stop string, calls found in it, and the log-probabilities of its tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from assistant.models import tool_calls


@dataclass
class Piece:
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    index: int = 0  # the reply it belongs to, of params["n"]
    last: bool = True  # with finish_reason: no reply follows (the request's "done")
    logprobs: list[dict[str, Any]] | None = None


def pieces(text: str, reader: tool_calls.CallReader | None, index: int,
            end: bool = False) -> Iterator[Piece]:
    """``text`` as pieces of reply ``index`` to send: as it is, or as the text and calls
    ``reader`` finds."""
    if reader is None:
        if text:
            yield Piece(text, index=index)
        return
    for item in reader.end() if end else reader.feed(text):
        yield (Piece(item, index=index) if isinstance(item, str)
               else Piece("", tool_calls=[item], index=index))


def split_on_stops(text: str, stops: list[str]) -> tuple[str, str, bool]:
    """Split ``text`` into what is safe to emit, what to hold back, and whether a stop hit."""
    if not stops:
        return text, "", False
    hits = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    if hits:
        return text[: min(hits)], "", True
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold], text[len(text) - hold:], False


def token_entry(raw: bytes, logprob: float) -> dict[str, Any]:
    return {"token": raw.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(raw)}
