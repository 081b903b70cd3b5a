"""Accepting TCP connections: the connection budget decides before asyncio builds anything.

asyncio's own accept makes a transport, a protocol (uvicorn's, with its HTTP parser) and a task
for every connection before any code of ours sees it. Under a flood of silent connections,
each one refused and at once re-opened by the attacker, that churn took three quarters of the
event loop, and ``/health`` over the owner's Unix socket answered in 0.45 s at p95 with
nothing else running, 1.4 s beside other load. So the TCP listeners are served by
:class:`Acceptor` instead: it accepts, asks the :class:`~assistant.daemon.connections.
ConnectionBudget`, and closes a refused connection that has sent nothing at once, as a socket
(no request was made: there is nothing to answer). Only admitted connections, and refused ones
whose request has arrived (they get their 503), become transports and protocols.

Each turn of the loop accepts at most :data:`ACCEPT_BURST` connections, so one burst cannot hold
the loop: the listener stays readable and the rest wait for the next turn. The Unix socket keeps
asyncio's accept: its peer is the owner, in a budget of its own.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from assistant.daemon.connections import ConnectionBudget
from assistant.daemon.protocol import GuardedH11Protocol, pending_bytes

log = logging.getLogger("assistant.daemon")

ACCEPT_BURST = 64
# A newcomer that has sent nothing when no room can be made waits in a lobby (a socket watched
# for its request, nothing more) at most LOBBY_S, LOBBY_MAX at once, the oldest leaving first:
# a client's request arrives a moment after its connection is accepted, and then it is
# admitted as one whose request has arrived; a flood's silent sockets are closed unread.
LOBBY_S = 0.25
LOBBY_MAX = 64
# Out of descriptors (or kernel memory): stop accepting this long, as asyncio does.
RETRY_S = 1.0
_SCARCE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Acceptor:
    """Serves listening socket ``sock`` on ``loop``: each connection is admitted to ``budget``
    and handed to a protocol from ``factory``, refused with a 503 (its request has arrived),
    or closed (it has sent nothing)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 budget: ConnectionBudget, factory: Callable[[], GuardedH11Protocol]) -> None:
        self.loop = loop
        self.sock = sock
        self.budget = budget
        self.factory = factory
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lobby: dict[socket.socket, tuple[str, float]] = {}  # oldest first
        self._sweep_at: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Take the listener over from the server asyncio made for it (whose ``close`` still
        stops it: it removes whatever reader the socket has)."""
        self.loop.remove_reader(self.sock.fileno())
        self.loop.add_reader(self.sock.fileno(), self._ready)

    def _ready(self) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as error:
                if error.errno not in _SCARCE:
                    raise
                log.warning("accept failed: out of descriptors or memory; retrying shortly",
                            extra={"error": str(error), "retry_s": RETRY_S})
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(RETRY_S, self._resume)
                return
            conn.setblocking(False)
            self._admit(conn, str(address[0]), may_wait=True)

    def _resume(self) -> None:
        if self.sock.fileno() >= 0:  # not closed meanwhile (the daemon stopping)
            self.loop.add_reader(self.sock.fileno(), self._ready)

    def _admit(self, conn: socket.socket, peer: str, may_wait: bool) -> None:
        sent = pending_bytes(conn) > 0
        room = self.budget.make_room(peer, sent)
        if not room and not sent:
            if may_wait:
                self._wait(conn, peer)
            else:
                conn.close()
            return
        protocol = self.factory()
        protocol.admitted = room
        if room:
            self.budget.add(protocol, peer)
        task = self.loop.create_task(self._connect(conn, protocol))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket, protocol: GuardedH11Protocol) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError:  # the peer left before the transport was made
            self.budget.release(protocol)
            conn.close()

    def _wait(self, conn: socket.socket, peer: str) -> None:
        if len(self._lobby) >= LOBBY_MAX:
            self._drop(next(iter(self._lobby)))
        self._lobby[conn] = (peer, self.loop.time())
        self.loop.add_reader(conn.fileno(), self._heard, conn)
        if self._sweep_at is None:
            self._sweep_at = self.loop.call_later(LOBBY_S, self._sweep)

    def _heard(self, conn: socket.socket) -> None:
        peer, _ = self._lobby.pop(conn)
        self.loop.remove_reader(conn.fileno())
        self._admit(conn, peer, may_wait=False)

    def _drop(self, conn: socket.socket) -> None:
        del self._lobby[conn]
        self.loop.remove_reader(conn.fileno())
        conn.close()

    def _sweep(self) -> None:
        self._sweep_at = None
        cutoff = self.loop.time() - LOBBY_S
        while self._lobby:
            conn, (_, since) = next(iter(self._lobby.items()))
            if since > cutoff:
                self._sweep_at = self.loop.call_later(since - cutoff, self._sweep)
                return
            self._drop(conn)
