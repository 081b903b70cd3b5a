"""The TCP acceptor: the budget decides as a connection is accepted, and a silent newcomer with
no room waits in the lobby for its request, or is closed unanswered.

The flood itself, against the real daemon, is ``tests/reliability/test_connections.py``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, cast

from assistant.daemon import acceptor
from assistant.daemon.acceptor import Acceptor
from assistant.daemon.connections import ConnectionBudget, ConnectionLimits
from assistant.daemon.protocol import pending_bytes


class Probe(asyncio.Protocol):
    """A connection as the acceptor and the budget see it: refused ones answer b"503"."""

    admitted: bool | None = None
    authenticated = False
    busy = False

    def __init__(self, budget: ConnectionBudget, made: list[Probe]) -> None:
        self.budget = budget
        self.made = made
        self.heard = False
        self.sock: socket.socket | None = None
        self.transport: asyncio.Transport | None = None
        self.evicted = False
        self.shut = False

    def accepted(self, sock: socket.socket) -> None:
        self.sock = sock

    @property
    def silent(self) -> bool:
        return not self.heard and pending_bytes(self.sock) == 0

    def shutdown(self) -> None:
        self.shut = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.made.append(self)
        if self.evicted:
            transport.abort()
        elif self.admitted is False:
            transport.write(b"503")
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.heard = True

    def evict(self) -> None:
        self.evicted = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.budget.release(self)


async def _serve(limits: ConnectionLimits, listener: socket.socket | None = None,
                 ) -> tuple[Acceptor, list[Probe], int, asyncio.Server]:
    """An asyncio server on a new listener (or ``listener``), handed to an Acceptor as the
    daemon's server does; every connection stays young (no grace runs out)."""
    loop = asyncio.get_running_loop()
    budget = ConnectionBudget(limits, grace_s=60)
    made: list[Probe] = []
    listener = listener or socket.create_server(("127.0.0.1", 0))
    server = await loop.create_server(lambda: Probe(budget, made), sock=listener)
    acceptor = Acceptor(loop, listener, budget, cast(Any, lambda: Probe(budget, made)))
    acceptor.start()
    return acceptor, made, listener.getsockname()[1], server


async def _closed(reader: asyncio.StreamReader, within: float) -> bytes:
    return await asyncio.wait_for(reader.read(), within)


def test_a_silent_newcomer_without_room_waits_then_is_closed_unanswered() -> None:
    async def main() -> None:
        server, made, port, listener = await _serve(ConnectionLimits(2, 2, 2))
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert len(made) == 2  # both admitted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        assert len(made) == 2 and len(server._lobby) == 1  # waiting, nothing built for it
        assert await _closed(reader, acceptor.LOBBY_S + 1) == b""  # closed, never answered
        assert not server._lobby and len(made) == 2
        assert all(not p.evicted for p in made)
        for _, w in [*held, (reader, writer)]:
            w.close()
        listener.close()

    asyncio.run(main())


async def _full_and_one_waiting(port: int) -> tuple[list[Any], Any]:
    """Two connections holding both places of a 2-place server, and a third in its lobby."""
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    await asyncio.sleep(0.05)
    newcomer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.05)
    return held, newcomer


def test_a_newcomer_whose_request_arrives_in_the_lobby_is_admitted() -> None:
    async def main() -> None:
        server, made, port, listener = await _serve(ConnectionLimits(2, 2, 2))
        held, (reader, writer) = await _full_and_one_waiting(port)
        assert len(server._lobby) == 1
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0.1)
        assert not server._lobby and len(made) == 3
        assert made[2].admitted is True and made[2].heard
        assert made[0].evicted and not made[1].evicted  # the oldest silent one made room
        assert await _closed(held[0][0], 1) == b""
        for _, w in [*held, (reader, writer)]:
            w.close()
        listener.close()

    asyncio.run(main())


def test_the_lobby_is_bounded_and_its_oldest_leaves_first(monkeypatch: Any) -> None:
    monkeypatch.setattr(acceptor, "LOBBY_MAX", 2)

    async def main() -> None:
        server, made, port, listener = await _serve(ConnectionLimits(1, 1, 1))
        first = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        waiting = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert len(server._lobby) == 2 and len(made) == 1
        assert await _closed(waiting[0][0], 1) == b""  # the oldest left to make room
        for _, w in [first, *waiting]:
            w.close()
        listener.close()

    asyncio.run(main())


def test_a_lobby_socket_made_to_leave_after_its_request_came_is_admitted() -> None:
    """Its request arrived in the same turn of the loop that makes it leave (the lobby full, or
    its time up) before its reader ran: admitted, not reset. A client on the flood's own
    address was reset so in a full run (test_a_new_client_with_the_token_is_served_during_the
    flood)."""
    async def main() -> None:
        server, made, port, listener = await _serve(ConnectionLimits(2, 2, 2))
        held, (reader, writer) = await _full_and_one_waiting(port)
        [waiting] = server._lobby
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        await writer.drain()
        time.sleep(0.05)  # arrived; the loop has not run the lobby's reader
        server._evict(waiting)
        await asyncio.sleep(0.1)
        assert not server._lobby and len(made) == 3
        assert made[2].admitted is True and made[2].heard
        for _, w in [*held, (reader, writer)]:
            w.close()
        listener.close()

    asyncio.run(main())


def test_a_newcomer_with_a_request_never_closes_one_whose_request_has_arrived() -> None:
    """Both requests are in before either connection is accepted (one burst): the second
    is refused with its 503, the first is not reset to make room for it."""
    listener = socket.create_server(("127.0.0.1", 0))
    clients = [socket.create_connection(listener.getsockname()) for _ in range(2)]
    for client in clients:
        client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    time.sleep(0.05)

    async def main() -> list[Probe]:
        _, made, _, server = await _serve(ConnectionLimits(1, 1, 1), listener)
        await asyncio.sleep(0.1)
        server.close()
        return made

    made = asyncio.run(main())
    assert [p.admitted for p in made] == [True, False]
    assert not made[0].evicted
    clients[1].settimeout(2)
    assert clients[1].recv(16) == b"503"
    for client in clients:
        client.close()


def test_closed_it_takes_nothing_more_in_and_empties_its_lobby() -> None:
    async def main() -> None:
        acceptor, made, port, server = await _serve(ConnectionLimits(1, 1, 1))
        held = await asyncio.open_connection("127.0.0.1", port)
        waiting = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        assert len(acceptor._lobby) == 1
        acceptor.close()
        server.close()
        assert not acceptor._lobby
        assert await _closed(waiting[0], 1) == b""
        assert len(made) == 1
        for _, w in (held, waiting):
            w.close()

    asyncio.run(main())
