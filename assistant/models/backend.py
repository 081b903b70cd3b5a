"""The contract between the daemon and whatever runs a model.

The daemon talks to every model through a :class:`Backend`: the model host process (GGUF and
ONNX files) is one; a plugin may register others through ``register_models`` (a remote API, or
the fake model the unit tests use). Backends run in the daemon's event loop and must not block.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from assistant.errors import RequestError

Role = Literal["system", "user", "assistant", "tool"]
T = TypeVar("T")


@dataclass(frozen=True)
class ToolCall:
    """A function the model called: OpenAI's ``tool_calls`` item."""

    id: str
    name: str
    arguments: str  # JSON text of an object, as OpenAI sends it


@dataclass(frozen=True)
class Tool:
    """A function the model may call: OpenAI's ``tools`` item."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    strict: bool = False  # OpenAI's: the arguments must follow ``parameters`` exactly


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    # An assistant message's calls, and a ``tool`` message's answer to one of them.
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # llama.cpp's penalties on tokens already in the prompt window (1.0 / 0.0: off); skills
    # set them to keep a small model out of loops.
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # llama.cpp's truncation before top_p (its server takes both as extra fields).
    top_k: int = 40
    min_p: float = 0.05
    # Structured output, enforced while decoding: the reply follows this JSON schema (checked
    # by :func:`assistant.models.structured.check`), or this llama.cpp GBNF grammar. A backend
    # that cannot enforce them says so with ``grammars = False`` and is never given them.
    json_schema: dict[str, Any] | None = None
    grammar: str | None = None
    # Functions the model may call (a backend with ``tools = False`` is never given any).
    # ``tool_choice``: ``auto`` (the model decides), ``none`` (it answers in text) or
    # ``required`` (it calls one or more; ``forced_tool`` names the one it must call). A
    # required call is enforced while decoding, so its arguments follow the function's
    # ``parameters``.
    tools: tuple[Tool, ...] = ()
    tool_choice: Literal["auto", "none", "required"] = "auto"
    forced_tool: str | None = None
    parallel_tool_calls: bool = True
    # Replies to the one prompt (read once), and what a backend reports of each token: its
    # log-probability and the ``top_logprobs`` likeliest alternatives; ``logit_bias`` adds to
    # the logits of token ids before sampling. A backend takes them if ``choices``,
    # ``logprobs`` and ``logit_bias`` say so.
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    logit_bias: dict[int, float] | None = None
    # The conversation a generation belongs to: saved model states are labelled with it, so
    # deleting the conversation deletes them. Set by the daemon, not by skills.
    cache_tag: str | None = None
    # Whether the caller reads the reply as it comes; False: it waits for the whole (a
    # non-streamed /v1 request), and a backend may ask its server for the whole at once.
    streamed: bool = True

    @property
    def constrained(self) -> bool:
        return self.json_schema is not None or self.grammar is not None

    @property
    def calls_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"


@dataclass
class Delta:
    """A piece of generated text, or calls the model made. The last one of a stream carries
    ``finish_reason``."""

    text: str
    finish_reason: Literal["stop", "length", "cancelled", "content_filter"] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    index: int = 0  # the reply it belongs to, of ``GenerationParams.n``; each ends on its own
    # OpenAI's ``logprobs.content`` items for the tokens of this piece (when asked for)
    logprobs: list[dict[str, Any]] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: Literal["chat", "embedding"]
    context_length: int
    owned_by: str = "assistant"
    details: dict[str, Any] = field(default_factory=dict)


async def close_stream(stream: AsyncIterator[object]) -> None:
    """Close an async iterator early (an async generator's ``aclose``), if it can be closed."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


@asynccontextmanager
async def closing_stream(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """``async with closing_stream(s) as s:`` closes ``s`` on the way out, early exits included,
    so that nested generators release what they hold (a queue slot, a host request) at once."""
    try:
        yield stream
    finally:
        await close_stream(stream)


class Backend(ABC):
    """Runs models. One backend may serve several model names."""

    # Whether :meth:`chat` enforces ``GenerationParams.json_schema`` and ``grammar``; a request
    # carrying them to a backend that does not is refused, never answered unconstrained.
    grammars: bool = False
    # Whether :meth:`chat` takes ``GenerationParams.tools`` and answers with ``Delta.tool_calls``.
    tools: bool = False
    # Whether it honours ``GenerationParams.n`` above 1, ``logprobs`` and ``logit_bias``.
    choices: bool = False
    logprobs: bool = False
    logit_bias: bool = False

    @abstractmethod
    def models(self) -> list[ModelInfo]:
        """The models this backend can serve now."""

    @abstractmethod
    def chat(
        self, model: str, messages: list[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        """Stream the reply to ``messages``. Closing the iterator cancels the generation."""

    def complete(
        self, model: str, prompt: str, params: GenerationParams
    ) -> AsyncIterator[Delta]:
        """Stream the continuation of ``prompt``, raw text given to the model as it is (no
        chat template), as :meth:`chat` streams a reply (``/v1/completions``). A backend that
        cannot complete raw text keeps this default, which refuses the request."""
        raise RequestError(
            f"model {model!r} cannot complete raw text; use /v1/chat/completions with it",
            code="unsupported_parameter", param="model",
        )

    @abstractmethod
    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """One L2-normalised vector per text."""

    def reports_logprobs(self, model: str) -> bool:
        """Whether :meth:`chat` of ``model`` honours ``GenerationParams.logprobs``; a backend
        that hands models to others (the daemon's model manager) answers for the one serving
        ``model``. A skill's context asks for them only then (a reply's confidence)."""
        return self.logprobs

    async def count_tokens(self, model: str, messages: list[ChatMessage]) -> int:
        """Tokens the rendered prompt takes; backends that cannot tell estimate."""
        return sum(len(m.content) // 4 + 4 for m in messages)

    async def context_length(self, model: str) -> int | None:
        """The context ``model`` runs with, in tokens; ``None`` when this backend cannot tell.

        Skills plan a single prompt against it, so a backend that answers should also count
        exactly in :meth:`count_tokens`.
        """
        return None
