"""The HTTP face of :mod:`assistant.errors`: one table, read both ways.

The daemon turns a raised error into a status and a JSON body with :func:`http_error`; the
client turns such a response back into the same kind of error with :func:`from_http`. Every
error body has OpenAI's shape, ``{"error": {"message", "type", "code", "param"}}``.

A :class:`~assistant.errors.RequestError` carries its own status, code and param (``400
invalid_request``, ``404 not_found``, ``unknown_skill``, ``context_length_exceeded``…); any
code not in :data:`TABLE` comes back as one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assistant.errors import (
    AssistantError,
    BackendFailed,
    ChatTemplateError,
    DaemonError,
    EngineRefusedKey,
    EngineUnavailable,
    HostStopped,
    InputError,
    MalformedImport,
    MemoryBudgetFull,
    ModelError,
    ModelLoadError,
    ModelNotFound,
    QueueFull,
    RequestError,
    SkillFailed,
    SkillUnavailable,
    StorageError,
    StorageUnavailable,
)


@dataclass(frozen=True)
class ErrorCode:
    """How errors of class ``error`` travel: HTTP ``status``, ``code``, OpenAI ``kind``."""

    error: type[AssistantError]
    status: int
    code: str
    kind: str = "invalid_request_error"
    param: str | None = None
    retry_after: str | None = None  # seconds, for a 503 worth retrying
    hint: str | None = None  # what the client's user is told to do
    read_back: bool = True  # False: comes back as itself only with its own Retry-After


# First match wins: a class comes before its parents. HostStopped, BackendFailed,
# ModelLoadError and ModelError share a code; read back, it is a ModelLoadError, or the one
# whose Retry-After it carries.
TABLE: tuple[ErrorCode, ...] = (
    ErrorCode(QueueFull, 503, "queue_full", "server_busy"),
    # The model file's own template was refused: retrying cannot help, so not a 503.
    ErrorCode(ChatTemplateError, 400, "model_template_refused", param="model"),
    ErrorCode(ModelNotFound, 404, "model_not_found", param="model",
              hint="`assistant models list` shows what is installed."),
    # The host restarts on the next request: worth retrying at once.
    ErrorCode(HostStopped, 503, "model_unavailable", "model_error", retry_after="1",
              read_back=False),
    ErrorCode(BackendFailed, 503, "model_unavailable", "model_error", retry_after="5",
              read_back=False),
    # A remote engine: down or busy (its Retry-After, else our backoff), or its key refused.
    ErrorCode(EngineUnavailable, 503, "engine_unavailable", "model_error"),
    ErrorCode(EngineRefusedKey, 503, "engine_key_refused", "model_error"),
    # Pinned models fill the budget: no Retry-After, only an unload or a bigger budget helps.
    ErrorCode(MemoryBudgetFull, 503, "memory_budget_full", "model_error",
              hint="`assistant daemon status` shows the pinned models; unload one "
                   "(`assistant models unload NAME`) or raise models.memory_budget_mb."),
    # A broken or unloadable model file: nothing the request can change.
    ErrorCode(ModelLoadError, 503, "model_unavailable", "model_error"),
    ErrorCode(ModelError, 503, "model_unavailable", "model_error"),
    ErrorCode(DaemonError, 503, "unavailable", "server_busy", retry_after="1"),
    ErrorCode(StorageUnavailable, 503, "storage_unavailable", "storage_error", retry_after="5"),
    ErrorCode(MalformedImport, 400, "invalid_import"),
    ErrorCode(InputError, 400, "unsupported_input"),
    ErrorCode(SkillUnavailable, 503, "skill_unavailable", "server_error",
              hint="`assistant plugins list` says why; `assistant plugins enable NAME` "
                   "re-arms it."),
    ErrorCode(SkillFailed, 500, "skill_failed", "server_error",
              hint="The daemon's log (daemon.log in the runtime dir) has the traceback."),
    ErrorCode(StorageError, 500, "storage_error", "storage_error"),
    ErrorCode(AssistantError, 500, "assistant_error", "server_error"),
)

INTERNAL = ErrorCode(AssistantError, 500, "internal_error", "server_error")
INTERNAL_MESSAGE = "internal error; see the daemon log"


def error_body(message: str, code: str, kind: str = "invalid_request_error",
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}


def http_error(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``exc`` as (status, JSON body, headers); an unexpected error says only where to look."""
    if isinstance(exc, RequestError):
        return exc.status, error_body(exc.message, exc.code, param=exc.param), {}
    if not isinstance(exc, AssistantError):
        return INTERNAL.status, error_body(INTERNAL_MESSAGE, INTERNAL.code, INTERNAL.kind), {}
    entry = next(e for e in TABLE if isinstance(exc, e.error))
    headers = {}
    if isinstance(exc, QueueFull | SkillUnavailable | EngineUnavailable):
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
    elif entry.retry_after is not None:
        headers["Retry-After"] = entry.retry_after
    return entry.status, error_body(exc.message, entry.code, entry.kind, entry.param), headers


def from_http(status: int, body: Any, headers: Mapping[str, str],
              fallback: str = "") -> AssistantError:
    """The error a response with ``status`` and JSON ``body`` stands for (the reverse of
    :func:`http_error`); ``fallback`` is the message when the body has none."""
    try:
        error = body["error"]
        message, code = str(error["message"]), str(error.get("code") or "")
        param = error.get("param")
    except (KeyError, TypeError):
        message, code, param = fallback, "", None
    retry = headers.get("retry-after")
    matches = [e for e in TABLE if e.code == code]
    entry = next((e for e in matches if not e.read_back and e.retry_after == retry),
                 next((e for e in matches if e.read_back), None))
    if entry is None:
        return RequestError(message, status=status, code=code or "error",
                            param=param if isinstance(param, str) else None)
    if entry.error is QueueFull:
        return QueueFull(message, _seconds(headers.get("retry-after")))
    if entry.error is EngineUnavailable:
        return EngineUnavailable(message, retry_after=_seconds(headers.get("retry-after")))
    if entry.error is EngineRefusedKey:
        return EngineRefusedKey(message)
    if entry.error is SkillUnavailable:
        retry = headers.get("retry-after")
        return SkillUnavailable(message, entry.hint, None if retry is None else _seconds(retry))
    return entry.error(message, entry.hint)


def from_event(event: Mapping[str, Any]) -> AssistantError:
    """The error a stream's ``error`` event stands for: its ``status`` (500 when absent),
    ``code``, ``message``, ``param`` and ``retry_after``, read through :data:`TABLE`."""
    status = event.get("status")
    body = {"error": {"message": str(event.get("message", "")), "code": event.get("code"),
                      "param": event.get("param")}}
    retry = event.get("retry_after")
    return from_http(status if isinstance(status, int) else 500, body,
                     {"retry-after": str(retry)} if retry is not None else {})


def _seconds(value: str | None) -> int:
    try:
        return max(1, int(value or "1"))
    except ValueError:
        return 1
