"""How many connections the daemon holds at once, and the open files it takes to hold them.

Every connection is a file descriptor, and so is each model file, pipe and database handle the
daemon opens. When they run out, ``accept()`` fails on every listener at once, the owner's Unix
socket included. So connections are counted per listener, each within a budget of its own
(:class:`ConnectionBudget`), and the daemon raises its open-file limit to cover every budget
plus what it needs beside them (:func:`open_file_limit`).

A TCP connection past its budget (all TCP connections, or one peer address's) closes another
first: the oldest one that has not yet shown the token, then the oldest idle keep-alive one.
A connection younger than :data:`GRACE_S` is spared, so a client's new one can send its
request; but under a flood of silent connections every one is that young, so a newcomer whose
request has already arrived may close the oldest young one that has sent nothing at all.
Only when every connection is authenticated and busy (or young and not silent) is the new one
refused, with a 503.
The Unix socket's budget is its own, so no TCP load can take the owner's way in.

A refused connection lingers a moment (:data:`LINGER_S`, :data:`LINGER_MAX` at once) so that
its client reads the 503 rather than a reset (``GuardedH11Protocol``).
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass, replace
from typing import Protocol

log = logging.getLogger("assistant.daemon")

# The listen backlog uvicorn gives each socket, and what asyncio accepts from the Unix socket in
# one turn of the loop before any is counted. (TCP connections are counted as they are accepted,
# by assistant.daemon.acceptor, 64 a turn, with up to 64 more waiting in its lobby: far less.)
ACCEPT_BATCH = 512
# Descriptors beside the connections: the database, model and document files, the model host's
# pipes, logs, the listeners themselves.
FILES_RESERVE = 1024
# The ASGI scope extension a request's connection puts its "the token was right" callback in.
AUTHENTICATED = "assistant.authenticated"
_REPORT_EVERY_S = 10.0
# A refused connection is closed only once its client has read the 503 and closed its end, or
# after LINGER_S; at most LINGER_MAX linger at once (past that, a refusal closes at once).
LINGER_S = 1.0
LINGER_MAX = 64
# An unauthenticated connection younger than this is not closed to make room: a client's
# brand-new connection has had no time yet to send its request and show the token.
GRACE_S = 0.5


@dataclass(frozen=True)
class ConnectionLimits:
    """Connections held at once: over TCP in all, over TCP from one peer address, and over the
    Unix socket. ``tcp`` is 0 when there is no TCP listener."""

    tcp: int
    tcp_per_peer: int
    unix: int

    def open_files(self) -> int:
        """The open-file limit that holds every budget at once: the connections, the bursts
        accepted before they are counted (a few loop turns' worth per listener), the refused
        ones lingering, and the rest."""
        listeners = 2 if self.tcp else 1
        return (self.tcp + self.unix + listeners * 3 * ACCEPT_BATCH + LINGER_MAX
                + FILES_RESERVE)

    def within(self, open_files: int) -> ConnectionLimits:
        """These limits, scaled down (both budgets alike) to fit ``open_files``; unchanged
        when they fit. Each keeps at least 16 connections (or its configured budget, when
        smaller), even past ``open_files``: a daemon that takes none would be no safer, only
        useless."""
        room = open_files - (self.open_files() - self.tcp - self.unix)
        wanted = self.tcp + self.unix
        if room >= wanted:
            return self
        share = max(room, 0) / wanted
        tcp = min(self.tcp, max(16, int(self.tcp * share))) if self.tcp else 0
        return replace(self, tcp=tcp, tcp_per_peer=min(self.tcp_per_peer, tcp),
                       unix=min(self.unix, max(16, int(self.unix * share))))


def open_file_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to ``wanted`` (at most the hard limit; never
    lower it) and return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft if soft != resource.RLIM_INFINITY else wanted


class Connection(Protocol):
    """What the budget needs of a connection (``GuardedH11Protocol`` is one)."""

    authenticated: bool

    @property
    def busy(self) -> bool:
        """True while a request is being answered."""

    @property
    def silent(self) -> bool:
        """True while not a byte has come from the client, read or waiting to be."""

    def evict(self) -> None:
        """Close the connection now, to make room for another."""


class ConnectionBudget:
    """The connections open on each listener, oldest first; :meth:`admit` each new one,
    :meth:`release` it when it closes."""

    def __init__(self, limits: ConnectionLimits, grace_s: float = GRACE_S) -> None:
        self.limits = limits
        self.grace_s = grace_s
        self._opened: dict[Connection, float] = {}
        self._unix: dict[Connection, None] = {}  # dicts keep insertion order: oldest first
        self._tcp: dict[Connection, None] = {}
        self._peers: dict[str, dict[Connection, None]] = {}
        self._where: dict[Connection, str | None] = {}
        self._lingering: set[Connection] = set()
        self.evicted = 0
        self.refused = 0
        self._reported = (0, 0)
        self._report_at = 0.0

    def count(self, peer: str | None = None) -> int:
        """TCP connections open (from ``peer``, when given)."""
        return len(self._tcp if peer is None else self._peers.get(peer, {}))

    def admit(self, conn: Connection, peer: str | None, sent: bool = False) -> bool:
        """Count ``conn`` in (``peer`` is its address, None for the Unix socket), closing
        another connection if its budget is full; False when it must be refused instead.
        ``sent``: its client has sent its request already (see :meth:`_victim`)."""
        if not self.make_room(peer, sent):
            return False
        self.add(conn, peer)
        return True

    def make_room(self, peer: str | None, sent: bool = False, count: bool = True) -> bool:
        """Room for one more connection from ``peer``, closing others if need be; False when
        there is none to close (counted as a refusal unless ``count`` is False: the caller
        decides later, and calls :meth:`refuse` if it refuses)."""
        if peer is None:
            pools = [(self._unix, self.limits.unix)]
        else:
            pools = [(self._peers.get(peer, {}), self.limits.tcp_per_peer),
                     (self._tcp, self.limits.tcp)]
        for pool, limit in pools:
            while len(pool) >= limit:
                victim = self._victim(pool, sent)
                if victim is None:
                    if count:
                        self.refuse()
                    return False
                self.release(victim)
                victim.evict()
                self.evicted += 1
        return True

    def refuse(self) -> None:
        """Count a connection refused for want of room."""
        self.refused += 1
        self._report()

    def add(self, conn: Connection, peer: str | None) -> None:
        """Count ``conn`` in, once :meth:`make_room` has made room for it."""
        self._where[conn] = peer
        self._opened[conn] = time.monotonic()
        if peer is None:
            self._unix[conn] = None
        else:
            self._tcp[conn] = None
            self._peers.setdefault(peer, {})[conn] = None
        self._report()

    def linger(self, conn: Connection) -> bool:
        """Let refused ``conn`` stay open until its client has read the refusal; False when
        :data:`LINGER_MAX` already do (close it at once). :meth:`release` ends it."""
        if len(self._lingering) >= LINGER_MAX:
            return False
        self._lingering.add(conn)
        return True

    @property
    def lingering(self) -> int:
        return len(self._lingering)

    def release(self, conn: Connection) -> None:
        """Count ``conn`` out; a connection not counted (refused, or released) is ignored."""
        self._lingering.discard(conn)
        if conn not in self._where:
            return
        peer = self._where.pop(conn)
        self._opened.pop(conn, None)
        if peer is None:
            self._unix.pop(conn, None)
            return
        self._tcp.pop(conn, None)
        pool = self._peers.get(peer, {})
        pool.pop(conn, None)
        if not pool:
            self._peers.pop(peer, None)

    def _report(self) -> None:
        # A flood closes thousands of connections: one line per interval, not one each.
        now = time.monotonic()
        if (self.evicted, self.refused) == self._reported or now < self._report_at:
            return
        log.warning("connection budget full: closed the oldest unauthenticated or idle "
                    "connections, refused new ones when all were busy",
                    extra={"evicted": self.evicted - self._reported[0],
                           "refused": self.refused - self._reported[1],
                           "tcp_open": len(self._tcp), "unix_open": len(self._unix)})
        self._reported = (self.evicted, self.refused)
        self._report_at = now + _REPORT_EVERY_S


    def _victim(self, pool: dict[Connection, None], sent: bool) -> Connection | None:
        """The oldest connection that has not shown the token in its first ``grace_s``; else,
        when none is still within its grace, the oldest idle one. While new unauthenticated
        connections pour in (a flood), the newcomer is refused rather than an owner's idle
        keep-alive connection closed, unless its request has arrived (``sent``) and a young
        one has sent nothing: then the oldest such one is closed. A flood of silent
        connections so cannot keep a client with a request out, and a client's own new
        connection is closed only for one that shows a request sooner."""
        # The pool is in the order connections opened: the first unauthenticated one is the
        # oldest, and when it is young, so are all after it (a flood's newcomer stops here).
        young = time.monotonic() - self.grace_s
        idle, waiting = None, False
        for conn in pool:
            if not conn.authenticated:
                if not waiting and self._opened.get(conn, 0.0) <= young:
                    return conn
                if not sent:
                    return None
                waiting = True
                if conn.silent:
                    return conn
            elif idle is None and not conn.busy:
                idle = conn
        return None if waiting else idle
