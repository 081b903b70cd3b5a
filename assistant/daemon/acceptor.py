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
from collections import Counter
from collections.abc import Callable
from typing import Any

from assistant.daemon.connections import ConnectionBudget
from assistant.daemon.protocol import GuardedH11Protocol, pending_bytes

log = logging.getLogger("assistant.daemon")

ACCEPT_BURST = 64
# A newcomer that has sent nothing when no room can be made waits in a lobby (a socket watched
# for its request, nothing more) at most LOBBY_S, LOBBY_MAX at once: a client's request arrives
# a moment after its connection is accepted, and then it is admitted as one whose request has
# arrived; a flood's silent sockets are closed unread. When the lobby is full, the oldest
# socket of the peer holding the most leaves first, so one peer's flood cannot push out
# another's client.
LOBBY_S = 0.25
LOBBY_MAX = 64
# Out of descriptors (or kernel memory): stop accepting this long, as asyncio does.
RETRY_S = 1.0
_SCARCE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# accept(2): errors of the connection that was to be accepted, not of the listener (retry).
_GONE = (errno.ENETDOWN, errno.EPROTO, errno.ENOPROTOOPT, errno.EHOSTDOWN, errno.ENONET,
         errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH)


class Acceptor:
    """Serves listening socket ``sock`` on ``loop``: each connection is admitted to ``budget``
    and handed to a protocol from ``factory``, refused with a 503 (its request has arrived),
    or closed (it has sent nothing). :meth:`close` before the server shuts its connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 budget: ConnectionBudget, factory: Callable[[], GuardedH11Protocol]) -> None:
        self.loop = loop
        self.sock = sock
        self.budget = budget
        self.factory = factory
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lobby: dict[socket.socket, tuple[str, float]] = {}  # oldest first
        self._waiting: Counter[str] = Counter()  # lobby sockets per peer
        self._sweep_at: asyncio.TimerHandle | None = None
        self._retry_at: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Take the listener over from the server asyncio made for it (whose ``close`` still
        stops it: it removes whatever reader the socket has)."""
        self.loop.remove_reader(self.sock.fileno())
        self.loop.add_reader(self.sock.fileno(), self._ready)

    def close(self) -> None:
        """Accept no more: the listener's reader removed, the lobby closed, and a connection
        still being made shut as soon as it is."""
        self.closed = True
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
        self._empty_lobby()
        for handle in (self._sweep_at, self._retry_at):
            if handle is not None:
                handle.cancel()

    def _ready(self) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if isinstance(error, ConnectionAbortedError) or error.errno in _GONE:
                    continue
                if error.errno not in _SCARCE:
                    raise
                log.warning("accept failed: out of descriptors or memory; retrying shortly",
                            extra={"error": str(error), "retry_s": RETRY_S})
                self.loop.remove_reader(self.sock.fileno())
                self._empty_lobby()  # its sockets are descriptors too
                self._retry_at = self.loop.call_later(RETRY_S, self._resume)
                return
            try:
                conn.setblocking(False)
                self._admit(conn, str(address[0]), may_wait=True)
            except Exception:
                log.exception("could not take a connection in")
                conn.close()

    def _resume(self) -> None:
        self._retry_at = None
        if not self.closed and self.sock.fileno() >= 0:
            self.loop.add_reader(self.sock.fileno(), self._ready)

    def _admit(self, conn: socket.socket, peer: str, may_wait: bool) -> None:
        if self.closed:
            conn.close()
            return
        sent = pending_bytes(conn) > 0
        wait = may_wait and not sent
        room = self.budget.make_room(peer, sent, count=not wait)
        if not room and not sent:
            if wait:
                self._wait(conn, peer)
            else:
                conn.close()
            return
        protocol = self.factory()
        protocol.accepted(conn)
        protocol.admitted = room
        if room:
            self.budget.add(protocol, peer)
        task = self.loop.create_task(self._connect(conn, protocol))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket, protocol: GuardedH11Protocol) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, conn)
        except Exception:
            # Not a peer that left (the transport takes that as a closed connection): the
            # loop closing under it.
            self.budget.release(protocol)
            conn.close()
            return
        if self.closed:  # accepted before the server stopped, made after: shut like the rest
            protocol.shutdown()

    def _wait(self, conn: socket.socket, peer: str) -> None:
        if len(self._lobby) >= LOBBY_MAX:
            crowded = self._waiting.most_common(1)[0][0]
            self._evict(next(c for c, (p, _) in self._lobby.items() if p == crowded))
        self._lobby[conn] = (peer, self.loop.time())
        self._waiting[peer] += 1
        self.loop.add_reader(conn.fileno(), self._heard, conn)
        if self._sweep_at is None:
            self._sweep_at = self.loop.call_later(LOBBY_S, self._sweep)

    def _leave(self, conn: socket.socket) -> str:
        peer, _ = self._lobby.pop(conn)
        self._waiting[peer] -= 1
        if not self._waiting[peer]:
            del self._waiting[peer]
        self.loop.remove_reader(conn.fileno())
        return peer

    def _heard(self, conn: socket.socket) -> None:
        peer = self._leave(conn)
        try:
            self._admit(conn, peer, may_wait=False)
        except Exception:
            log.exception("could not take a connection in")
            conn.close()

    def _evict(self, conn: socket.socket) -> None:
        """Make a lobby socket leave: admitted if its request has come (it may have arrived
        in this same turn of the loop, before :meth:`_heard` ran; dropped unread, a client on
        the flood's own address was reset), else closed."""
        if pending_bytes(conn) > 0:
            self._heard(conn)
        else:
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        """Close a lobby socket unanswered: its client sent nothing in time (a refusal)."""
        self._leave(conn)
        conn.close()
        self.budget.refuse()

    def _empty_lobby(self) -> None:
        while self._lobby:
            self._drop(next(iter(self._lobby)))

    def _sweep(self) -> None:
        self._sweep_at = None
        cutoff = self.loop.time() - LOBBY_S
        while self._lobby:
            conn, (_, since) = next(iter(self._lobby.items()))
            if since > cutoff:
                self._sweep_at = self.loop.call_later(since - cutoff, self._sweep)
                return
            self._evict(conn)
