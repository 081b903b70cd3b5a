"""Counting a prompt's tokens with a remote engine's own tokenizer, when it has one.

Two routes are known, both at the server's root (its ``base_url`` without the ``/v1``):
``POST /tokenize`` — llama.cpp's server reads ``content``, vLLM ``prompt`` and ``model`` —
and llama-cpp-python's ``POST /extras/tokenize`` (``input``, ``model``); each answers
``{"tokens": [...]}`` (vLLM a ``count`` too). Which one an engine has is found by its first
count and kept; an engine that answers neither (404, or a 4xx of its own) is not asked again.
A failure that says nothing of the route (unreachable, a 5xx, a 429) is not kept: the next
count asks again.

What is counted is the messages' text with their roles, plus :data:`MARKUP_PER_MESSAGE` for
the chat template's markers around each and :data:`MARKUP_REPLY` for the reply's header: a
template's own text (a default system prompt some add when there is none) is not seen.
Without a tokenizer, :func:`estimate` counts a byte as half a token, which no tokenizer we
know of comes near: the count is never under the truth, so a plan made with it fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from assistant.models.backend import ChatMessage

ROUTES = ("/tokenize", "/extras/tokenize")
MARKUP_PER_MESSAGE = 3  # ChatML: <|im_start|>, <|im_end|>; Llama 3: one more
MARKUP_REPLY = 3  # the assistant header the prompt ends with


def estimate(messages: Sequence[ChatMessage]) -> int:
    """An upper bound of the tokens ``messages`` take, without a tokenizer."""
    return sum(len(m.content.encode("utf-8")) // 2 + 8 for m in messages) + MARKUP_REPLY


def prompt_text(messages: Sequence[ChatMessage]) -> str:
    return "".join(f"{m.role}\n{m.content}\n" for m in messages)


class EngineTokenizer:
    """One engine's tokenize route: not yet known, found, or known to be missing."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.route: str | None = None
        self.missing = False

    @property
    def kind(self) -> str | None:
        """``/tokenize``, ``/extras/tokenize``, ``estimate`` (the engine has neither), or
        None while no count has asked."""
        return self.route or ("estimate" if self.missing else None)

    async def count(self, client: httpx.AsyncClient, headers: dict[str, str], model: str,
                    messages: Sequence[ChatMessage]) -> int | None:
        """The tokens of ``messages`` by the engine's tokenizer; None when it cannot tell
        (no route, or none now): the caller estimates."""
        if self.missing:
            return None
        text = prompt_text(messages)
        for route in (self.route,) if self.route else ROUTES:
            body: dict[str, Any] = ({"input": text, "model": model} if route == "/extras/tokenize"
                                    else {"content": text, "prompt": text, "model": model})
            try:
                response = await client.post(self.root + route, json=body, headers=headers)
            except httpx.HTTPError:
                return None
            if response.status_code >= 500 or response.status_code in {408, 429}:
                return None
            tokens = _tokens(response) if response.status_code < 400 else None
            if tokens is not None:
                self.route = route
                return tokens + MARKUP_PER_MESSAGE * len(messages) + MARKUP_REPLY
        self.route, self.missing = None, True
        return None


def _tokens(response: httpx.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("tokens"), list):
        return len(body["tokens"])
    if isinstance(body.get("count"), int):
        return int(body["count"])
    return None
