"""OpenAI's legacy text completion route, ``/v1/completions``, which older tools still call.

The prompt is given to the model as raw text, with no chat template, and the model continues
it. Sampling, stop strings, grammars, streaming and usage are the chat route's
(:mod:`assistant.daemon.openai_api`); so is the rule that a field is honoured or refused by
name, never dropped.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from assistant.daemon import deps
from assistant.daemon.openai_api import ROUTED_MODEL, GenerationRequest, check_model
from assistant.daemon.openai_stream import collect, finish_reason, sse_response, usage
from assistant.models.backend import GenerationParams

router = APIRouter()

# OpenAI's default for this route: a request without max_tokens gets a short continuation.
DEFAULT_MAX_TOKENS = 16


class CompletionRequest(GenerationRequest):
    # One text prompt; token arrays and batches are taken only to be refused by name.
    prompt: str | list[str | int | list[int]]
    # Accepted at the value that asks for nothing more.
    best_of: int | None = Field(None, ge=1)
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = Field(None, ge=0, le=5)  # the likeliest tokens shown with each

    def refuse_unsupported(self) -> None:
        """A 400 ``unsupported_parameter`` naming the first field asked for that this daemon
        cannot honour yet."""
        self.refuse([
            ("model", self.model == ROUTED_MODEL,
             f"model {ROUTED_MODEL!r} routes chat turns to skills and cannot complete raw "
             "text; name a model (GET /v1/models lists them)"),
            ("prompt", not isinstance(self.text(), str),
             "one text prompt per request: a string, or a list of one string (token arrays "
             "and several prompts are not supported)"),
            ("best_of", self.best_of not in (None, 1), "only best_of = 1 is supported"),
            ("echo", bool(self.echo), "the prompt is not echoed back"),
            ("suffix", bool(self.suffix), "text after the insertion point is not supported"),
        ])
        self.check_shape()

    def text(self) -> str | None:
        """The prompt's one text, or None when it is not one text."""
        if isinstance(self.prompt, str):
            return self.prompt
        only = self.prompt[0] if len(self.prompt) == 1 else None
        return only if isinstance(only, str) else None

    def params(self) -> GenerationParams:
        return dataclasses.replace(
            self.generation_params(self.max_tokens or DEFAULT_MAX_TOKENS),
            logprobs=self.logprobs is not None, top_logprobs=self.logprobs or 0)


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request,
                      models: deps.ModelsDep) -> Any:
    check_model(models, body.model)
    body.refuse_unsupported()
    params = body.params()
    await models.check_max_tokens(body.model, params)
    stream = models.complete(body.model, body.text() or "", params)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
            "created": int(time.time()), "model": body.model}
    # Pull the first piece before answering, so that a full queue, a prompt over the context
    # or a model that fails to load is an HTTP error, not a broken stream.
    first = await anext(stream)
    if body.stream:
        return sse_response(first, stream, head, _Choices(), body.streaming)
    replies = await collect(request, first, stream)
    return {**head, "usage": usage(replies), "choices": [
        _Choices()(i, r.text, finish_reason(r.end), r.logprobs)
        for i, r in enumerate(replies)]}


class _Choices:
    """A reply's choice objects, chunk after chunk: each token's ``text_offset`` counts from
    the start of its reply, across chunks."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    def __call__(self, index: int, text: str, finish: str | None,
                 logprobs: list[dict[str, Any]] | None) -> dict[str, Any]:
        start = self.offsets.get(index, 0)
        if logprobs is not None:
            self.offsets[index] = start + sum(len(e["token"]) for e in logprobs)
        return {"index": index, "text": text, "finish_reason": finish,
                "logprobs": _legacy(logprobs, start) if logprobs is not None else None}


def _legacy(entries: list[dict[str, Any]], at: int = 0) -> dict[str, Any]:
    """Chat's ``logprobs.content`` items in this route's older shape: parallel lists, the
    alternatives as token → logprob, and each token's offset in the completion."""
    offsets = []
    for entry in entries:
        offsets.append(at)
        at += len(entry["token"])
    return {"tokens": [e["token"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]}
                             for e in entries],
            "text_offset": offsets}

