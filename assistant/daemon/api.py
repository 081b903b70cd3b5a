"""The daemon's HTTP application: middleware, error rendering, health and status routes.

The OpenAI-compatible routes are in openai_api.py, the native turn API in turns_api.py. Every
error leaves as JSON ``{"error": {"message", "type", "code", "param"}}`` (OpenAI's shape) with a
4xx status for anything the client can fix; no traceback or absolute path is ever sent.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant import __version__
from assistant.errors import (
    AssistantError,
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


def error_body(message: str, code: str, kind: str = "invalid_request_error",
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}


def error_response(exc: Exception) -> JSONResponse:
    """The one place a domain error becomes an HTTP response."""
    if isinstance(exc, RequestError):
        return JSONResponse(error_body(exc.message, exc.code, param=exc.param), exc.status)
    if isinstance(exc, QueueFull):
        return JSONResponse(
            error_body(exc.message, "queue_full", "server_busy"), 503,
            headers={"Retry-After": str(exc.retry_after)},
        )
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


MAX_HEADERS = 100
MAX_HEADER_BYTES = 32 * 1024


class BodyLimit:
    """413 for bodies over the limit, whether or not Content-Length tells the truth; 431 for
    a request head over :data:`MAX_HEADERS` fields or :data:`MAX_HEADER_BYTES` (h11 bounds only
    a head that arrives in pieces, and one socket read can bring 256 KB)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        if (len(headers) > MAX_HEADERS
                or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES):
            await _send_json(send, 431, error_body(
                "the request headers are too large", "headers_too_large"),
                {"connection": "close"})
            return
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send_json(send, 413, error_body(
                    f"the request body is over the {self.limit}-byte limit", "body_too_large"))
                return
        seen = 0
        refused = False

        # Past the limit the client gets its 413 at once and the app sees a disconnect: an
        # exception here would be turned into a 400 by FastAPI's body parsing.
        async def limited() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    if not refused:
                        refused = True
                        await _send_json(send, 413, error_body(
                            f"the request body is over the {self.limit}-byte limit",
                            "body_too_large"))
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, unless_refused)



class RedactErrors:
    """Error bodies and SSE ``error`` events leave without absolute paths, user name or token.

    A 4xx/5xx body is held (they are small), scrubbed and sent with its new length; streamed
    chunks that carry an error event are scrubbed as they pass.
    """

    def __init__(self, app: ASGIApp, secrets: list[str | None]) -> None:
        self.app = app
        self.secrets = secrets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body = b""

        async def scrubbing(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message
                return
            if message["type"] == "http.response.body":
                if held is not None:
                    body += message.get("body", b"")
                    if message.get("more_body", False):
                        return
                    clean = self._scrub(body)
                    headers = [(k, v) for k, v in held.get("headers", [])
                               if k.lower() != b"content-length"]
                    headers.append((b"content-length", str(len(clean)).encode()))
                    await send({**held, "headers": headers})
                    await send({"type": "http.response.body", "body": clean})
                    held = None
                    return
                chunk = message.get("body", b"")
                if chunk.startswith((b"event: error", b'data: {"error"')):
                    message = {**message, "body": self._scrub(chunk)}
            await send(message)

        await self.app(scope, receive, scrubbing)

    def _scrub(self, raw: bytes) -> bytes:
        from assistant.redaction import redact

        return redact(raw.decode("utf-8", "replace"), self.secrets).encode()


class TokenGuard:
    """TCP requests need the bearer token and a loopback Host; the Unix socket is private.

    uvicorn gives a Unix-socket request ``server = (path, None)`` and a TCP one
    ``(host, port)``; anything else is treated as TCP, so a change there fails closed.
    """

    def __init__(self, app: ASGIApp, token: str | None, allowed_hosts: set[str]) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "http" or (server is not None and server[1] is None):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in self.allowed_hosts:
            await _send_json(send, 403, error_body("host not allowed", "forbidden_host"))
            return
        auth = headers.get(b"authorization", b"").decode("latin-1")
        given = auth[7:] if auth[:7].lower() == "bearer " else ""
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            await _send_json(send, 401, error_body(
                "missing or wrong bearer token", "unauthorized", "authentication_error"),
                {"www-authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> None:
    import json

    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


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
            "state_cache": (await daemon.host_info()).get("state_cache", {}),
        }

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        return await daemon.status()

    @app.post("/api/models/{name}/load")
    async def load(name: str, keep_alive: int | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        resident = await daemon.models.load(name, keep_alive)
        return {"name": name, "kind": resident.kind, "seconds": time.perf_counter() - started,
                "info": resident.info}

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
