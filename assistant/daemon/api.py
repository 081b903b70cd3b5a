"""The daemon's HTTP application: error rendering, health and status routes.

The OpenAI-compatible routes are in openai_api.py and completions_api.py, the native turn API
in turns_api.py, and the middleware around them all (body limit, redaction, token) in
middleware.py. Every error leaves as JSON ``{"error": {"message", "type", "code", "param"}}``
(OpenAI's shape) with a 4xx status for anything the client can fix; no traceback or absolute
path is ever sent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from assistant import __version__
from assistant.daemon import (
    completions_api,
    documents_api,
    history_api,
    openai_api,
    plugins_api,
    reroute_api,
    turns_api,
)
from assistant.daemon.deps import ModelsDep, StatusDep, owner_only, text_only
from assistant.daemon.middleware import BodyLimit, RedactErrors, TokenGuard
from assistant.daemon.services import Services
from assistant.error_codes import error_body, http_error
from assistant.errors import AssistantError

log = logging.getLogger("assistant.daemon")


def error_response(exc: Exception) -> JSONResponse:
    """The one place an error becomes an HTTP response (the table: assistant.error_codes)."""
    status, body, headers = http_error(exc)
    return JSONResponse(body, status, headers=headers or None)


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    field = ".".join(loc) or None
    message = str(first.get("msg", "invalid request"))
    return (f"{field}: {message}" if field else message), field


_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in the same JSON shape: domain errors, invalid requests, unknown
    routes, and anything unexpected (a 500 that says only to look at the log)."""

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
        log.exception("unexpected error in %s", request.url.path)
        return error_response(exc)


def create_app(services: Services) -> ASGIApp:
    """The daemon's app: :func:`build_app` inside the middleware."""
    return with_middleware(build_app(services), services)


def with_middleware(app: ASGIApp, services: Services) -> ASGIApp:
    access = services.access
    guarded = TokenGuard(app, access.token, access.allowed_hosts, services.user_of)
    redacted = RedactErrors(guarded, [access.token])
    return BodyLimit(redacted, services.settings.daemon.max_body_bytes)


def build_app(services: Services) -> FastAPI:
    """The routes, getting ``services`` through :mod:`assistant.daemon.deps`."""
    app = FastAPI(title="assistant", version=__version__, docs_url=None, redoc_url=None,
                  dependencies=[Depends(text_only)])
    app.state.services = services
    install_error_handlers(app)

    @app.get("/health")
    async def health(status: StatusDep) -> dict[str, Any]:
        return status.health()

    @app.get("/api/status")
    async def daemon_status(status: StatusDep) -> dict[str, Any]:
        return await status.status()

    @app.post("/api/models/{name}/load")
    async def load(name: str, models: ModelsDep, keep_alive: int | None = None,
                   ) -> dict[str, Any]:
        started = time.perf_counter()
        resident = await models.load(name, keep_alive)
        return {"name": name, "kind": resident.kind, "seconds": time.perf_counter() - started,
                "info": resident.info, "context": await models.context_length(name)}

    @app.post("/api/models/{name}/unload", dependencies=[Depends(owner_only)])
    async def unload(name: str, models: ModelsDep) -> dict[str, Any]:
        return {"name": name, "unloaded": await models.unload(name)}

    for module in (openai_api, completions_api, turns_api, history_api, reroute_api,
                   documents_api, plugins_api):
        app.include_router(module.router)
    return app
