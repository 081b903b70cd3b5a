"""What goes over the wire to a remote engine and back: an OpenAI request's fields made from
ours, and the parts of its answers (stream chunks, error bodies) read back; and its listing as
``assistant models list`` asks for it without the daemon. No state: the engine
(:mod:`assistant.models.remote`) holds that.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any, Literal

import httpx

from assistant.config import EngineSettings
from assistant.models.backend import ChatMessage, GenerationParams


def server_root(base_url: str) -> str:
    """The server's own root, where its routes beside the OpenAI API live (``/tokenize``):
    ``base_url`` without its ``/v1``."""
    url = base_url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def message_body(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": c.arguments}}
                             for c in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def sampling_body(params: GenerationParams) -> dict[str, Any]:
    """``params`` as an OpenAI request's fields, with llama.cpp's (``top_k``, ``min_p``,
    ``repeat_penalty``) under the names its server and vLLM take: every setting the daemon
    would use for a local model is sent, so a remote one samples the same way."""
    body: dict[str, Any] = {
        "temperature": params.temperature, "top_p": params.top_p,
        "frequency_penalty": params.frequency_penalty,
        "presence_penalty": params.presence_penalty,
        "top_k": params.top_k, "min_p": params.min_p, "repeat_penalty": params.repeat_penalty,
    }
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if params.n > 1:
        body["n"] = params.n
    if params.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = params.top_logprobs
    if params.logit_bias:
        body["logit_bias"] = {str(k): v for k, v in params.logit_bias.items()}
    return body


def chat_text(choice: dict[str, Any]) -> str:
    delta = choice.get("delta") or {}
    return str(delta.get("content") or "")


def finish_reason(choice: dict[str, Any]) -> Literal["stop", "length"]:
    return "length" if choice.get("finish_reason") == "length" else "stop"


def error_fields(content: bytes) -> tuple[str, str | None, str | None]:
    """The message, code and param of an error body: OpenAI's ``{"error": {...}}``, FastAPI's
    ``{"detail": ...}``, or plain text (cut)."""
    try:
        body = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip()[:300], None, None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code, param = error.get("code"), error.get("param")
        return (str(error.get("message") or "")[:1000], code if isinstance(code, str) else None,
                param if isinstance(param, str) else None)
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:1000], None, None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"][:1000], None, None
    return str(body)[:300], None, None


def seconds(value: str | None) -> int | None:
    try:
        return max(1, math.ceil(float(value))) if value else None
    except ValueError:
        return None


def normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def list_models(name: str, settings: EngineSettings, environ: Mapping[str, str] | None = None,
                timeout: float = 3.0) -> tuple[list[str], str | None]:
    """The models engine ``name`` offers, as ``NAME/MODEL``, and why it could not be asked
    (``assistant models list``, without the daemon): its configured ``models``, else what its
    ``/models`` lists now."""
    if settings.models:
        return [f"{name}/{m}" for m in settings.models], None
    env = os.environ if environ is None else environ
    headers = {}
    if settings.api_key_env:
        if not env.get(settings.api_key_env):
            return [], f"needs a key in {settings.api_key_env}, which is not set"
        headers["Authorization"] = f"Bearer {env[settings.api_key_env]}"
    try:
        response = httpx.get(settings.base_url.rstrip("/") + "/models", headers=headers,
                             timeout=timeout)
    except httpx.HTTPError as exc:
        return [], f"cannot be reached: {type(exc).__name__}: {exc}"
    if response.status_code >= 400:
        said = f"{response.status_code}: {error_fields(response.content)[0]}"
        if response.status_code in {401, 403} and settings.api_key_env:
            return [], f"refused the key in {settings.api_key_env} ({said})"
        return [], f"answered /models with {said}"
    try:
        return [f"{name}/{m['id']}" for m in response.json()["data"]], None
    except (ValueError, KeyError, TypeError):
        return [], "its /models is not an OpenAI model list"
