"""The HTTP middleware around the app, outermost first; errors in the shape of
:func:`assistant.error_codes.error_body`.

- :class:`BodyLimit`: 413 for a body over the limit (stated or not), 431 for a huge head;
- :class:`RedactErrors`: error bodies and streamed error events leave without absolute paths,
  the user name or the token;
- :class:`TokenGuard`: a TCP request needs an allowed ``Host`` and a bearer token: the runtime
  token (compared in constant time), which makes the request the daemon's owner's, or a user's
  token (``assistant users add``), looked up on every request, which makes it that user's. The
  Unix socket is private and its owner's. The request's owner is put in the scope
  (:data:`OWNER`), where :func:`assistant.daemon.deps.owner` reads it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.daemon.connections import AUTHENTICATED
from assistant.error_codes import error_body, http_error
from assistant.errors import AssistantError

MAX_HEADERS = 100
# The scope key holding the request's owner: 0 the daemon's owner, else a user's id.
OWNER = "assistant.owner"
# A user's token → that user's id, or None (unknown or revoked); may raise StorageUnavailable.
UserLookup = Callable[[str], Awaitable[int | None]]
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
    """TCP requests need a bearer token and an allowed Host; the Unix socket is private.

    uvicorn gives a Unix-socket request ``server = (path, None)`` and a TCP one
    ``(host, port)``; anything else is treated as TCP, so a change there fails closed.
    ``users`` recognises users' tokens; without it only the runtime token is let in.
    """

    def __init__(self, app: ASGIApp, token: str | None, allowed_hosts: set[str],
                 users: UserLookup | None = None) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts
        self.users = users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        server = scope.get("server")
        scope[OWNER] = 0  # also overwrites any value a client could have put there
        if server is not None and server[1] is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in self.allowed_hosts:
            await _send_json(send, 403, error_body("host not allowed", "forbidden_host"))
            return
        auth = headers.get(b"authorization", b"").decode("latin-1")
        given = auth[7:] if auth[:7].lower() == "bearer " else ""
        owner: int | None = None
        if self.token and hmac.compare_digest(given.encode(), self.token.encode()):
            owner = 0
        elif given and self.users is not None:
            try:
                owner = await self.users(given)
            except AssistantError as exc:  # the store cannot say: 503, never let in
                status, body, extra = http_error(exc)
                await _send_json(send, status, body, {k.lower(): v for k, v in extra.items()})
                return
        if owner is None:
            await _send_json(send, 401, error_body(
                "missing or wrong bearer token", "unauthorized", "authentication_error"),
                {"www-authenticate": "Bearer"})
            return
        scope[OWNER] = owner
        # A connection that has shown the token is closed last when the connections are full.
        authenticated = (scope.get("extensions") or {}).get(AUTHENTICATED)
        if authenticated is not None:
            authenticated()
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
