"""OpenAI-compatible routes: /v1/chat/completions, /v1/models, /v1/embeddings.

The official ``openai`` SDK works against these unchanged. The model name ``assistant`` routes
the last user message through the skills and stores the turn, like the native API. The request
fields, the streamed chunks and the gathering of a whole reply serve ``/v1/completions`` too
(:mod:`assistant.daemon.completions_api`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from assistant.daemon import deps, openai_tools
from assistant.daemon.disconnect import unless_disconnected
from assistant.daemon.embeddings import check_embedding_input
from assistant.daemon.model_manager import ModelManager
from assistant.daemon.openai_stream import (
    Gathered,
    StreamOptions,
    call_json,
    collect,
    finish_reason,
    sse_response,
    usage,
)
from assistant.daemon.openai_turn import openai_turn
from assistant.errors import RequestError
from assistant.models.backend import ChatMessage, GenerationParams, Tool
from assistant.models.structured import check_grammar, schema_for

router = APIRouter()

ROUTED_MODEL = "assistant"
MAX_CHOICES = 8  # n
MAX_BIAS = 300  # logit_bias entries, as OpenAI allows


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = ""
    name: str | None = None  # accepted; the chat template has no place for it
    tool_calls: list[Any] | None = None  # an assistant's calls
    tool_call_id: str | None = None  # the call a tool message answers

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


# Fields taken and ignored, and why (docs/api.md lists every field).
IGNORED = {
    "user": "no accounts to attribute a request to",
    "metadata": "completions are not stored",
    "store": "completions are not stored",
    "service_tier": "one tier",
    "safety_identifier": "no accounts to attribute a request to",
    "prompt_cache_key": "every prompt's prefix is reused without a key",
}
# Fields of other servers, taken at the value that changes nothing here: llama.cpp's server
# (mirostat off, typical_p and tfs_z 1, cache_prompt: prefixes are always reused) and OpenAI's
# text-only modalities.
NEUTRAL: dict[str, Any] = {"mirostat": 0, "typical_p": 1, "tfs_z": 1, "cache_prompt": True,
                           "modalities": ["text"]}


Asked = tuple[str, bool, str]  # a field, whether its value is refused, and why


class GenerationRequest(BaseModel):
    """The fields /v1/chat/completions and /v1/completions share.

    Every field is looked at: one this daemon does not honour is refused by name
    (unsupported_parameter), never silently dropped. Null asks for the default.
    """

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=256)
    stream: bool | None = False
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    # llama.cpp's own, as its server takes them: 0 turns top_k and min_p off.
    repeat_penalty: float | None = Field(None, gt=0, le=2)
    top_k: int | None = Field(None, ge=0, le=1000)
    min_p: float | None = Field(None, ge=0, le=1)
    stream_options: dict[str, Any] | None = None
    grammar: str | None = Field(None, min_length=1)  # llama.cpp's GBNF
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)  # replies to the prompt, read once
    logit_bias: dict[str, float] | None = None  # token id → added to its logit

    @property
    def streaming(self) -> StreamOptions:
        options = self.stream_options or {}
        return StreamOptions(bool(options.get("include_usage")),
                             bool(options.get("include_obfuscation")))

    def refuse(self, asked: list[Asked]) -> None:
        """A 400 ``unsupported_parameter`` naming the first field asked for that this daemon
        cannot honour yet: of the shared ones, then of ``asked`` (the request's own), then
        any field sent that no request declares."""
        if self.model == ROUTED_MODEL:
            asked = [("n", (self.n or 1) > 1, f"model {ROUTED_MODEL!r} gives one reply"),
                     ("logit_bias", bool(self.logit_bias),
                      f"model {ROUTED_MODEL!r} routes the turn to a skill, which sets its "
                      "own sampling"), *asked]
        asked += [(f"stream_options.{key}", value is not None, "not supported")
                  for key, value in (self.stream_options or {}).items()
                  if key not in {"include_usage", "include_obfuscation"}]
        if self.stream_options and not self.stream:
            raise RequestError("stream_options: only with stream true", param="stream_options")
        # A field sent as null or empty, or at its neutral value, asks for nothing.
        asked += [(key, value not in (None, [], {}, "") and NEUTRAL.get(key, ...) != value,
                   "not supported")
                  for key, value in (self.model_extra or {}).items() if key not in IGNORED]
        for name, refused, why in asked:
            if refused:
                raise RequestError(f"{name}: {why}", code="unsupported_parameter",
                                   param=name.split("[")[0])

    def check_shape(self, formatted: bool = False) -> None:
        """A 400 for a stop string beside a grammar or a ``response_format`` (``formatted``),
        or a grammar llama.cpp cannot parse."""
        if self.stop and (self.grammar is not None or formatted):
            raise RequestError("stop: a stop string would cut a reply the grammar or schema "
                               "shapes (its end is the grammar's); leave stop out",
                               param="stop")
        if self.grammar is not None:
            check_grammar(self.grammar)

    def generation_params(self, max_tokens: int | None,
                          json_schema: dict[str, Any] | None = None) -> GenerationParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > 8:
            raise RequestError("stop: at most 8 stop sequences", param="stop")
        bias: dict[int, float] = {}
        for key, value in (self.logit_bias or {}).items():
            if not (key.isascii() and key.isdigit() and len(key) <= 9) or not (
                    -100 <= value <= 100):
                raise RequestError("logit_bias: keys are token ids and values from -100 to "
                                   f"100 (not {key!r}: {value!r})", param="logit_bias")
            bias[int(key)] = float(value)
        if len(bias) > MAX_BIAS:
            raise RequestError(f"logit_bias: at most {MAX_BIAS} tokens", param="logit_bias")
        sampling = {key: value for key in (
            "temperature", "top_p", "frequency_penalty", "presence_penalty", "repeat_penalty",
            "top_k", "min_p") if (value := getattr(self, key)) is not None}
        return GenerationParams(
            max_tokens=max_tokens, stop=tuple(stop), seed=self.seed, json_schema=json_schema,
            grammar=self.grammar, n=self.n or 1, logit_bias=bias or None,
            streamed=bool(self.stream), **sampling,
        )


class ChatRequest(GenerationRequest):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    def refuse_unsupported(self) -> None:
        """A 400 ``unsupported_parameter`` naming the first field asked for that this daemon
        cannot honour yet."""
        asked = [
            ("logprobs", bool(self.logprobs) and self.model == ROUTED_MODEL,
             f"model {ROUTED_MODEL!r} routes the turn to a skill, which reports none"),
        ]
        if self.top_logprobs and not self.logprobs:
            raise RequestError("top_logprobs: needs logprobs true", param="top_logprobs")
        for i, m in enumerate(self.messages):
            asked += [(f"messages[{i}].{key}", value not in (None, [], {}, ""), "not supported")
                      for key, value in (m.model_extra or {}).items()]
            parts = m.content if isinstance(m.content, list) else []
            asked += [(f"messages[{i}].content", p.get("type") != "text",
                       f"content of type {p.get('type')!r} is not supported (text only)")
                      for p in parts]
        self.refuse(asked)
        formatted = (self.response_format or {}).get("type", "text") != "text"
        self._check_tools()
        if self.grammar is not None and formatted:
            raise RequestError("grammar and response_format: give one, not both",
                               param="grammar")
        self.check_shape(formatted)

    @functools.cached_property
    def offered(self) -> tuple[tuple[Tool, ...], Literal["auto", "none", "required"],
                               str | None]:
        """The tools, ``tool_choice`` and the function it names, checked (once)."""
        tools = openai_tools.parse_tools(self.tools)
        return (tools, *openai_tools.parse_choice(self.tool_choice, tools))

    def _check_tools(self) -> None:
        tools, choice, _ = self.offered
        calls_tools = bool(tools) and choice != "none"
        history = [i for i, m in enumerate(self.messages) if m.role == "tool" or m.tool_calls]
        if self.model == ROUTED_MODEL and (calls_tools or history):
            raise RequestError(
                f"tools: model {ROUTED_MODEL!r} routes the turn to a skill, which calls no "
                "tools; name a chat model instead", code="unsupported_parameter",
                param="tools" if calls_tools else "messages")
        # The rest (schemas a grammar must enforce, tools beside a schema, stop beside a
        # required call) is checked for every caller, skills too: ModelManager.chat.
        made: set[str] = set()  # the ids of the last assistant message's calls
        for i, m in enumerate(self.messages):
            if m.tool_calls and m.role != "assistant":
                raise RequestError(f"messages[{i}].tool_calls: only an assistant message "
                                   "makes calls", param="messages")
            if m.role == "assistant":
                made = {c.id for c in openai_tools.parse_calls(i, m.tool_calls)}
            if m.role == "tool" and m.tool_call_id not in made:
                raise RequestError(
                    f"messages[{i}].tool_call_id: a tool message answers a call of the "
                    f"assistant message before it ({', '.join(sorted(made)) or 'none'}), "
                    f"not {m.tool_call_id!r}", param="messages")

    def params(self) -> GenerationParams:
        tools, choice, forced = self.offered
        return dataclasses.replace(
            self.generation_params(self.max_completion_tokens or self.max_tokens,
                                   schema_for(self.response_format)),
            tools=tools, tool_choice=choice, forced_tool=forced,
            parallel_tool_calls=self.parallel_tool_calls is not False,
            logprobs=bool(self.logprobs), top_logprobs=self.top_logprobs or 0)

    def chat_messages(self) -> list[ChatMessage]:
        return [
            ChatMessage("system" if m.role == "developer" else m.role, m.text(),
                        tool_calls=openai_tools.parse_calls(i, m.tool_calls),
                        tool_call_id=m.tool_call_id)
            for i, m in enumerate(self.messages)
        ]


class EmbeddingRequest(BaseModel):
    # Kept, to be refused by name: a field silently ignored (``dimensions`` above all) would
    # give the client vectors other than those it asked for.
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None  # OpenAI's end-user id: nothing to do with it here
    dimensions: int | None = Field(None, ge=1)  # only the model's own: vectors are not cut

    def refuse_unsupported(self) -> None:
        """A 400 ``unsupported_parameter`` naming the first field sent that no embedding
        request declares (null or empty asks for nothing)."""
        for key, value in (self.model_extra or {}).items():
            if value not in (None, [], {}, ""):
                raise RequestError(f"{key}: not supported", code="unsupported_parameter",
                                   param=key)

    def check_dimensions(self, vectors: list[list[float]]) -> None:
        """A 400 ``unsupported_parameter`` when ``dimensions`` is not the model's own."""
        if self.dimensions is not None and vectors and len(vectors[0]) != self.dimensions:
            raise RequestError(
                f"dimensions: {self.model!r} gives vectors of {len(vectors[0])} dimensions "
                "only; leave dimensions out, or give that", code="unsupported_parameter",
                param="dimensions")


@router.get("/v1/models")
async def list_models(models: deps.ModelsDep, status: deps.StatusDep) -> dict[str, Any]:
    created = int(status.started_at)
    data = [{"id": ROUTED_MODEL, "object": "model", "created": created,
             "owned_by": "assistant", "kind": "router", "loaded": True}]
    for info in models.models():
        entry = {
            "id": info.name, "object": "model", "created": created,
            "owned_by": info.owned_by, "kind": info.kind,
            "loaded": bool(info.details.get("loaded")), "context_length": info.context_length,
            "context": await models.context_length(info.name),
        }
        if info.details.get("remote"):  # served by an engine ([engines.NAME]), as it stands
            entry.update(remote=True, engine=info.details["engine"],
                         engine_state=info.details["state"])
        data.append(entry)
    return {"object": "list", "data": data}


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request,
                     services: deps.ServicesDep) -> dict[str, Any]:
    models = services.models
    texts = [body.input] if isinstance(body.input, str) else body.input
    body.refuse_unsupported()
    check_embedding_input(texts, services.settings.embeddings)
    check_model(models, body.model)
    vectors = await unless_disconnected(request, services.embeddings.run(body.model, texts))
    body.check_dimensions(vectors)
    encode = _base64_floats if body.encoding_format == "base64" else list
    return {
        "object": "list", "model": body.model,
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v)}
            for i, v in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


def _base64_floats(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32, what its SDK asks for by default."""
    import base64
    import struct

    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def check_model(models: ModelManager, name: str) -> None:
    if name != ROUTED_MODEL and not models.knows(name):
        raise RequestError(
            f"model {name!r} does not exist; `assistant models list` shows what is installed",
            status=404, code="model_not_found", param="model",
        )


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request,
                           services: deps.ServicesDep) -> Any:
    models = services.models
    check_model(models, body.model)
    body.refuse_unsupported()
    params = body.params()
    notices: list[str] = []
    if body.model == ROUTED_MODEL:  # only a routed turn waits for start-up (routing warm)
        turns = await deps.started(services)
        # "model" names the router here, not the model a skill's refusal would be about.
        carried = frozenset(body.model_fields_set - {"model"})
        stream = openai_turn(turns, body.chat_messages(), params, carried=carried,
                             notices=notices, local=deps.local_peer(request),
                             owner=deps.owner(request))
    else:
        await models.check_max_tokens(body.model, params)
        stream = models.chat(body.model, body.chat_messages(), params)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": body.model}
    # Pull the first piece before answering, so that a full queue, a prompt over the context
    # or a model that fails to load is an HTTP error, not a broken stream.
    first = await anext(stream)
    headers = notice_header(notices)
    if body.stream:
        return sse_response(first, stream, {**head, "object": "chat.completion.chunk"},
                            _chat_delta, body.streaming,
                            opening={"role": "assistant", "content": ""}, headers=headers)
    replies = await collect(request, first, stream)
    return JSONResponse({**head, "choices": [_chat_choice(i, r) for i, r in enumerate(replies)],
                         "usage": usage(replies)}, headers=notice_header(notices))


def notice_header(notices: list[str]) -> dict[str, str]:
    """``X-Assistant-Notice``: the turn's notices so far, one line of printable ASCII (other
    characters as ``\\uXXXX``), at most 2,000 characters."""
    if not notices:
        return {}
    text = " | ".join(" ".join(n.split()) for n in notices)
    safe = "".join(c if " " <= c <= "~" and c != "\\" else f"\\u{ord(c):04x}" for c in text)
    return {"X-Assistant-Notice": safe[:2000]}


def _chat_choice(index: int, reply: Gathered) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.calls:
        message.update(content=reply.text or None, tool_calls=[call_json(c) for c in reply.calls])
    return {"index": index, "message": message,
            "logprobs": {"content": reply.logprobs} if reply.logprobs is not None else None,
            "finish_reason": finish_reason(reply.end, bool(reply.calls))}


def _chat_delta(index: int, text: str, finish: str | None,
                logprobs: list[dict[str, Any]] | None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "delta": {"content": text} if text else {},
                              "finish_reason": finish}
    if logprobs:
        choice["logprobs"] = {"content": logprobs}
    return choice
