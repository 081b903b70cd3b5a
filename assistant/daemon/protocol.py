"""uvicorn's HTTP/1.1 protocol with three guards of our own, applied per connection.

- The Unix socket's peer must be our own user (``SO_PEERCRED``): the socket is already 0600 in
  a 0700 directory, and this closes the connection should those permissions ever be widened.
- A request's head and body must arrive within :data:`REQUEST_TIMEOUT_S` of the connection
  being ready for it; a slow (slowloris) client is cut off instead of holding a connection
  forever. uvicorn itself only times out idle keep-alive connections.
- Each connection is counted in its listener's budget
  (:class:`~assistant.daemon.connections.ConnectionBudget`): past it, an unauthenticated one
  (older than a short grace, so a client's new connection can show its token; or a young one
  that has sent nothing, for a newcomer whose request has arrived: ``FIONREAD`` at accept) or
  an idle one is closed to make room, or the new one is refused with a 503. A refused
  connection is not closed with its request unread: that sends a reset, which can reach the
  client before it reads the 503. The daemon ends its side (``shutdown(SHUT_WR)``), reads and
  drops what the client sends until it closes, and closes after ``LINGER_S`` in any case.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import json
import logging
import os
import socket
import struct
import termios
from typing import Any

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from assistant.daemon.connections import AUTHENTICATED, LINGER_S, ConnectionBudget
from assistant.error_codes import error_body

log = logging.getLogger("assistant.daemon")

REQUEST_TIMEOUT_S = 10.0
_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_uid(sock: socket.socket | None) -> int | None:
    """The uid of a Unix socket's peer; None for other sockets."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


def pending_bytes(sock: socket.socket | None) -> int:
    """Bytes that have arrived on ``sock`` and are not read yet (FIONREAD); 0 when unknown."""
    if sock is None:
        return 0
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
    except OSError:
        return 0
    return count[0]


def guarded_protocol(budget: ConnectionBudget) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn, its connections counted in ``budget``."""
    return type("BudgetedH11Protocol", (GuardedH11Protocol,), {"budget": budget})


class GuardedH11Protocol(H11Protocol):
    budget: ConnectionBudget | None = None
    # Decided before the connection was made (TCP: assistant.daemon.acceptor): counted in the
    # budget (True) or to be refused (False); None: decided in connection_made.
    admitted: bool | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._received = False
        self._refused = False
        self._heard = False
        self._sock: socket.socket | None = None
        self._evicted = False
        self.authenticated = False
        app: ASGIApp = self.app

        # The token is checked by the middleware; it tells this connection through the scope.
        async def telling_the_connection(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[AUTHENTICATED] = self._authenticated
            await app(scope, receive, send)

        self.app = telling_the_connection

    @property
    def busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    @property
    def silent(self) -> bool:
        return not self._heard and pending_bytes(self._sock) == 0

    def accepted(self, sock: socket.socket) -> None:
        """Its socket, known before the connection is made (the acceptor counts it in the
        budget at once): until then ``silent`` reads what has arrived on it."""
        self._sock = sock

    def _authenticated(self) -> None:
        self.authenticated = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = self._sock = transport.get_extra_info("socket")
        uid = peer_uid(sock)
        if uid is not None and uid != os.getuid():
            log.warning("refused a connection from another user", extra={"peer_uid": uid})
            transport.abort()
            return
        if self._evicted:  # closed to make room before its transport was made
            transport.abort()
            return
        if self.admitted is False:
            self._refuse()
            return
        if self.budget is not None and self.admitted is None:
            unix = sock is not None and sock.family == socket.AF_UNIX
            # The Unix socket's peer is its owner: the token is for TCP only.
            self.authenticated = unix
            peer = None if unix else str((transport.get_extra_info("peername") or ("?",))[0])
            sent = not unix and pending_bytes(sock) > 0
            if not self.budget.admit(self, peer, sent):
                self._refuse()
                return
        self._arm()

    def _refuse(self) -> None:
        body = json.dumps(error_body(
            "too many connections are open and busy; retry shortly", "too_many_connections",
            "server_busy")).encode()
        head = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"retry-after: 1\r\nconnection: close\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
        self._refused = True
        self.transport.write(head + body)
        if self.budget is None or not self.budget.linger(self):
            self.transport.close()
            return
        self.transport.write_eof()  # sent once the 503 is; the client's EOF closes (eof_received)
        self._deadline = self.loop.call_later(LINGER_S, self.transport.abort)

    def evict(self) -> None:
        if self.transport is None:
            self._evicted = True
        elif not self.transport.is_closing():
            self.transport.abort()

    def _arm(self) -> None:
        self._disarm()
        self._received = False
        self._deadline = self.loop.call_later(REQUEST_TIMEOUT_S, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self._received and not self.transport.is_closing():
            log.warning("closed a connection whose request did not arrive in time",
                        extra={"timeout_s": REQUEST_TIMEOUT_S})
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the request of a refused connection: read only to be dropped
        self._heard = True
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._received = True
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.budget is not None:
            self.budget.release(self)
        super().connection_lost(exc)
