"""The daemon's HTTP application: error rendering, health and status routes.

The OpenAI-compatible routes are in openai_api.py, the native turn API in turns_api.py, and the
middleware around them all (body limit, redaction, token) in middleware.py. Every error leaves
as JSON ``{"error": {"message", "type", "code", "param"}}`` (OpenAI's shape) with a 4xx status
for anything the client can fix; no traceback or absolute path is ever sent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from assistant import __version__
from assistant.daemon.middleware import BodyLimit, RedactErrors, TokenGuard, error_body
from assistant.errors import (
    AssistantError,
    ChatTemplateError,
    DaemonError,
    MalformedImport,
    ModelError,
    ModelLoadError,
    ModelNotFound,
    QueueFull,
    RequestError,
    StorageError,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from assistant.daemon.server import Daemon


def error_response(exc: Exception) -> JSONResponse:
    """The one place a domain error becomes an HTTP response."""
    if isinstance(exc, RequestError):
        return JSONResponse(error_body(exc.message, exc.code, param=exc.param), exc.status)
    if isinstance(exc, QueueFull):
        return JSONResponse(
            error_body(exc.message, "queue_full", "server_busy"), 503,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, ChatTemplateError):
        # The model file's own template was refused: retrying cannot help, so not a 503.
        return JSONResponse(error_body(exc.message, "model_template_refused", param="model"), 400)
    if isinstance(exc, ModelNotFound):
        return JSONResponse(error_body(exc.message, "model_not_found", param="model"), 404)
    if isinstance(exc, ModelLoadError | ModelError):
        # A broken or unloadable model file: nothing the request can change.
        return JSONResponse(error_body(exc.message, "model_unavailable", "model_error"), 503)
    if isinstance(exc, DaemonError):
        return JSONResponse(error_body(exc.message, "unavailable", "server_busy"), 503,
                            headers={"Retry-After": "1"})
    if isinstance(exc, StorageUnavailable):
        return JSONResponse(error_body(exc.message, "storage_unavailable", "storage_error"), 503,
                            headers={"Retry-After": "5"})
    if isinstance(exc, MalformedImport):
        return JSONResponse(error_body(exc.message, "invalid_import"), 400)
    if isinstance(exc, StorageError):
        return JSONResponse(error_body(exc.message, "storage_error", "storage_error"), 500)
    if isinstance(exc, AssistantError):
        return JSONResponse(error_body(exc.message, "assistant_error", "server_error"), 500)
    return JSONResponse(error_body("internal error; see the daemon log", "internal_error",
                                   "server_error"), 500)


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    field = ".".join(loc) or None
    message = str(first.get("msg", "invalid request"))
    return (f"{field}: {message}" if field else message), field


_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


def create_app(daemon: Daemon) -> ASGIApp:
    from assistant.daemon import openai_api, turns_api

    app = FastAPI(title="assistant", version=__version__, docs_url=None, redoc_url=None)
    app.state.daemon = daemon
    app.state.store = None  # set once the store is open (Daemon.startup)
    daemon.app = app

    @app.exception_handler(AssistantError)
    async def _domain_error(request: Request, exc: AssistantError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = _describe_validation(exc)
        return JSONResponse(error_body(message, "invalid_request", param=field), 400)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Unknown routes, wrong methods, unreadable bodies: the same error shape as the rest.
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(str(exc.detail), code), exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        daemon.log.exception("unexpected error in %s", request.url.path)
        return error_response(exc)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": daemon.state,
            "version": __version__,
            "models": [r["name"] for r in daemon.models.status()],
            "state_cache": daemon.cached_host_info().get("state_cache", {}),
        }

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        return await daemon.status()

    @app.post("/api/models/{name}/load")
    async def load(name: str, keep_alive: int | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        resident = await daemon.models.load(name, keep_alive)
        return {"name": name, "kind": resident.kind, "seconds": time.perf_counter() - started,
                "info": resident.info, "context": await daemon.models.context_length(name)}

    @app.post("/api/models/{name}/unload")
    async def unload(name: str) -> dict[str, Any]:
        return {"name": name, "unloaded": await daemon.models.unload(name)}

    app.include_router(openai_api.router)
    app.include_router(turns_api.router)
    for router in daemon.extra_routers():
        app.include_router(router)

    guarded = TokenGuard(app, daemon.token, daemon.allowed_hosts)
    redacted = RedactErrors(guarded, [daemon.token])
    return BodyLimit(redacted, daemon.settings.daemon.max_body_bytes)
