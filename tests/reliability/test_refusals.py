"""A connection the daemon refuses gets its 503, and our own client tries again (issue 21.4).

Past its budget, with every connection authenticated and busy, the daemon answers a new one
``503 too_many_connections`` as it accepts it. On main (8fef38d) it then closed the socket at
once, with the client's request unread in it: the kernel sends a reset instead of an end of
stream, and a TCP stack may drop, on a reset, what its client has not read yet. Here, on Linux
loopback, main's 20 refused clients each read the 503 and then a reset (the first test fails
on "reset"); on main our client did not retry either (the second fails with DaemonNotRunning).
Now the daemon shuts its side down after the 503 (``shutdown(SHUT_WR)``), reads and drops the
request until the client closes, and closes after ``connections.LINGER_S`` at most. The CLI's
and TUI's client (:class:`assistant.client.Client`) sends a refused request again after its
Retry-After, twice at most.

The connections are real sockets to a real daemon whose budgets are set small: 2 over TCP,
16 over the Unix socket (the least it takes). A connection is held authenticated and busy by
sending a request with the token whose body never comes (cut off by the slow-client timer,
10 s, after the test).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from assistant.client import Client, RetryRefused
from assistant.config import load_settings
from assistant.testing import RunningDaemon, daemon_environment, start_daemon
from tests.reliability.test_http import free_port

TCP, UNIX = 2, 16


@pytest.fixture
def tight(tmp_path: Path, runtime_root: Path) -> Iterator[tuple[RunningDaemon, int]]:
    port = free_port()
    env = daemon_environment(tmp_path / "data", runtime_root / "run", extra_env={
        "ASSISTANT_DAEMON__TCP": f'"127.0.0.1:{port}"',
        "ASSISTANT_DAEMON__MAX_TCP_CONNECTIONS": str(TCP),
        "ASSISTANT_DAEMON__MAX_TCP_CONNECTIONS_PER_PEER": str(TCP),
        "ASSISTANT_DAEMON__MAX_UNIX_CONNECTIONS": str(UNIX)})
    daemon = start_daemon(env, tmp_path / "daemon.log")
    yield daemon, port
    daemon.stop()


def _busy(connect: Callable[[], socket.socket], host: str, token: str = "") -> socket.socket:
    """A connection that has shown the token and waits for a request body that never comes."""
    sock = connect()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    sock.sendall((f"POST /api/import HTTP/1.1\r\nHost: {host}\r\n{auth}"
                  "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[").encode())
    return sock


def _answer(sock: socket.socket, request: bytes) -> tuple[bytes, str]:
    """What the daemon sends back to ``request`` until it closes, and how it closed:
    ``eof`` (an end of stream) or ``reset``."""
    sock.settimeout(5)
    received = b""
    try:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionResetError, BrokenPipeError):
        return received, "reset"
    return received, "eof"


def _refused(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    return (head.startswith(b"HTTP/1.1 503")
            and json.loads(body)["error"]["code"] == "too_many_connections")


def test_a_refused_tcp_client_reads_its_503_and_an_end_of_stream(
        tight: tuple[RunningDaemon, int]) -> None:
    daemon, port = tight
    token = (daemon.runtime / "token").read_text().strip()
    host = f"127.0.0.1:{port}"

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port))

    # A request with a body of 256 KiB: the daemon refuses the connection with most of it
    # unread, and the client is still sending when the daemon answers.
    body = b"[" + b" " * 262_142 + b"]"
    request = (f"POST /api/import HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    with ExitStack() as held:
        for _ in range(TCP):
            held.enter_context(_busy(connect, host, token))
        time.sleep(0.3)  # both requests are under way: authenticated and busy
        answers = []
        for _ in range(20):
            with connect() as sock:
                answers.append(_answer(sock, request))
    assert all(_refused(received) for received, _ in answers), answers
    assert [how for _, how in answers] == ["eof"] * 20, answers
    with httpx.Client(base_url=f"http://{host}", headers={"Authorization": f"Bearer {token}"},
                      timeout=5) as client:
        assert client.get("/health").status_code == 200  # once the two have gone


def test_our_client_sends_a_refused_request_again_after_retry_after(
        tight: tuple[RunningDaemon, int]) -> None:
    daemon, _ = tight

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(daemon.socket))
        return sock

    settings = load_settings(environ=daemon.env)
    holders = [_busy(connect, "assistant") for _ in range(UNIX)]
    # The busy connections end while the client waits out its first Retry-After (1 s).
    release = threading.Timer(0.5, lambda: [sock.close() for sock in holders])
    try:
        time.sleep(0.3)
        with connect() as sock:  # refused, as the client's first try will be
            assert _refused(_answer(sock, b"GET /health HTTP/1.1\r\nHost: assistant\r\n\r\n")[0])
        with Client(settings) as client:
            started = time.monotonic()
            release.start()
            health = client.require_daemon()  # without a retry: DaemonNotRunning
            took = time.monotonic() - started
    finally:
        release.cancel()
        for sock in holders:
            sock.close()
    assert health["status"] != "starting"
    assert took >= 0.9, f"answered after {took:.2f} s: the request was not refused first"


def test_the_retry_gives_up_after_two_more_tries() -> None:
    sent: list[float] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return httpx.Response(503, headers={"Retry-After": "0"}, json={"error": {
            "message": "too many connections", "code": "too_many_connections"}})

    transport = RetryRefused(httpx.MockTransport(refuse))
    with httpx.Client(transport=transport, base_url="http://assistant") as client:
        reply = client.post("/api/turns", json={"text": "hi"})
    assert reply.status_code == 503 and len(sent) == 3
    assert reply.json()["error"]["code"] == "too_many_connections"

    other: list[int] = []

    def busy(request: httpx.Request) -> httpx.Response:
        other.append(1)
        return httpx.Response(503, json={"error": {"message": "x", "code": "queue_full"}})

    with httpx.Client(transport=RetryRefused(httpx.MockTransport(busy)),
                      base_url="http://assistant") as client:
        assert client.get("/x").status_code == 503
    assert len(other) == 1  # only a refused connection is tried again
