"""What the daemon sends the model host for a request, and what the host's errors become:
a refused prompt or field is the caller's 400, a host killed or hung a 503 to retry
(:class:`~assistant.errors.HostStopped`), anything else the model's failure."""

from __future__ import annotations

import dataclasses
from typing import Any

from assistant.errors import HostError, HostStopped, ModelLoadError, RequestError
from assistant.models.backend import ChatMessage, GenerationParams


def host_message(message: ChatMessage) -> dict[str, Any]:
    """``message`` as the model host renders it: OpenAI's shape for calls and results."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def host_params(params: GenerationParams) -> dict[str, Any]:
    """``params`` as the model host's ``chat`` and ``complete`` take them."""
    return {
        "max_tokens": params.max_tokens, "temperature": params.temperature,
        "top_p": params.top_p, "stop": list(params.stop), "seed": params.seed,
        "cache_tag": params.cache_tag, "repeat_penalty": params.repeat_penalty,
        "frequency_penalty": params.frequency_penalty,
        "presence_penalty": params.presence_penalty,
        "top_k": params.top_k, "min_p": params.min_p,
        "json_schema": params.json_schema, "grammar": params.grammar,
        "tools": [dataclasses.asdict(t) for t in params.tools],
        "tool_choice": params.tool_choice, "forced_tool": params.forced_tool,
        "parallel_tool_calls": params.parallel_tool_calls,
        "n": params.n, "logprobs": params.logprobs, "top_logprobs": params.top_logprobs,
        "logit_bias": {str(k): v for k, v in (params.logit_bias or {}).items()},
    }


HOST_GONE = frozenset({"HostCrashed", "HostHung"})  # the host ended, not the request's doing


def request_error(model: str, exc: HostError, prompt_field: str = "messages") -> Exception:
    # These messages start with the field at fault.
    if exc.kind in {"GrammarRefused", "PromptRefused", "ParamRefused"}:
        return RequestError(exc.message, param=exc.message.split(":", 1)[0])
    if exc.kind == "ContextLengthExceeded":
        return RequestError(
            f"{exc.message} (model {model!r})", code="context_length_exceeded",
            param=prompt_field,
        )
    if exc.kind == "HostHung":
        return HostStopped(f"{exc.message} (it was running {model!r})", "Try the request again.")
    if exc.kind == "HostCrashed":
        return HostStopped(
            f"the model host stopped while running {model!r}; it is restarting",
            "Try the request again.",
        )
    return ModelLoadError(f"model {model!r} failed: {exc.message}")
