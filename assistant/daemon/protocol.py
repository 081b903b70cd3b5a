"""uvicorn's HTTP/1.1 protocol with two guards of our own, applied per connection.

- The Unix socket's peer must be our own user (``SO_PEERCRED``): the socket is already 0600 in
  a 0700 directory, and this closes the connection should those permissions ever be widened.
- A request's head and body must arrive within :data:`REQUEST_TIMEOUT_S` of the connection
  being ready for it; a slow (slowloris) client is cut off instead of holding a connection
  forever. uvicorn itself only times out idle keep-alive connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("assistant.daemon")

REQUEST_TIMEOUT_S = 10.0
_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_uid(sock: socket.socket | None) -> int | None:
    """The uid of a Unix socket's peer; None for other sockets."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


class GuardedH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._received = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        uid = peer_uid(transport.get_extra_info("socket"))
        if uid is not None and uid != os.getuid():
            log.warning("refused a connection from another user", extra={"peer_uid": uid})
            transport.abort()
            return
        self._arm()

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
        super().connection_lost(exc)
