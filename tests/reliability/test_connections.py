"""A local user without the token floods the TCP listener with silent connections (issue 21.4).

The daemon is started as a login session starts it, with a soft open-file limit of 1,024 (the
hard limit left as it is). An attacker opens 1,100 connections from four loopback addresses
and sends nothing, re-opening each one the daemon closes. Meanwhile the owner's ``/health``
over the Unix socket must answer within 1 s, at most ``max_tcp_connections`` (512) TCP
connections stay open in all and ``max_tcp_connections_per_peer`` (256) from one address, and
a client with the token is served on a keep-alive connection the flood does not take away.

Before the budgets (main at f362aed), the daemon held every connection until its 10 s
slow-client timer: at 1,024 descriptors ``accept()`` failed on both listeners, and the first
``/health`` over the Unix socket timed out after 1 s.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.testing import RunningDaemon, daemon_environment, start_daemon
from tests.conftest import TEST_MODELS_DIR
from tests.integration.conftest import CHAT_MODEL, require_models
from tests.reliability.test_http import free_port

ATTACKERS = 1100
PEERS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
TCP_CAP, PER_PEER = 512, 256  # config/default.toml
# What the daemon raises its soft limit to for the default budgets: 512 TCP + 2,048 Unix-socket
# connections + 2 listeners x 3 x 512 accepted before they are counted + 64 refused ones
# lingering + 1,024 other files.
OPEN_FILES = 6720
LOGIN_SOFT_LIMIT = 1024
FLOOD_S = 2.0
NEW_CLIENTS = 20


@contextlib.contextmanager
def soft_nofile(limit: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip(f"the hard open-file limit ({hard}) is below the {limit} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def tcp_daemon(tmp_path: Path) -> Iterator[tuple[RunningDaemon, int]]:
    require_models()
    runtime = Path(tempfile.mkdtemp(prefix="ac-", dir="/tmp"))
    port = free_port()
    env = daemon_environment(tmp_path / "data", runtime / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR,
                             extra_env={"ASSISTANT_DAEMON__TCP": f'"127.0.0.1:{port}"'})
    with soft_nofile(LOGIN_SOFT_LIMIT):  # the daemon inherits it
        daemon = start_daemon(env, tmp_path / "daemon.log")
    yield daemon, port
    daemon.stop()
    shutil.rmtree(runtime, ignore_errors=True)


def nofile_soft(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


class Flood:
    """Silent connections from each of :data:`PEERS` in turn; each one the daemon closes is
    opened again from the same address, until :meth:`stop`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def open(self, peer: str) -> None:
        sock = socket.socket()
        sock.bind((peer, 0))
        sock.connect(("127.0.0.1", self.port))
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, peer)

    def start(self) -> None:
        for n in range(ATTACKERS):
            self.open(PEERS[n % len(PEERS)])
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.selector.select(0.05):
                if closed(key.fileobj):  # type: ignore[arg-type]
                    self.selector.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
                    if not self._stop.is_set():
                        self.open(key.data)
                        self.reopened += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def still_open(self) -> Counter[str]:
        """Connections the daemon has not closed, by source address."""
        held: Counter[str] = Counter()
        for key in list(self.selector.get_map().values()):
            if not closed(key.fileobj):  # type: ignore[arg-type]
                held[key.data] += 1
        return held

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


def closed(sock: socket.socket) -> bool:
    """True when the daemon closed ``sock`` (a reset, an end of stream, or its 503)."""
    try:
        sock.recv(1, socket.MSG_PEEK)  # the daemon never speaks first on an open connection
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


def test_a_silent_tcp_flood_leaves_the_unix_socket_and_the_token_holder_served(
    tcp_daemon: tuple[RunningDaemon, int],
) -> None:
    daemon, port = tcp_daemon
    token = (daemon.runtime / "token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    with soft_nofile(4 * ATTACKERS), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, headers=auth) as owner_tcp:
        assert owner_tcp.get("/health").status_code == 200  # authenticated before the flood
        flood = Flood(port)
        try:
            flood.start()
            health_s, served = [], 0
            deadline = time.monotonic() + FLOOD_S
            with daemon.http(timeout=1.0) as unix:
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    assert unix.get("/health").status_code == 200
                    health_s.append(time.monotonic() - started)
                    assert owner_tcp.get("/api/status").status_code == 200
                    served += 1
                    time.sleep(0.05)
            flood.stop()
            time.sleep(0.5)  # the daemon has accepted what it will accept
            held = flood.still_open()
            # A fresh connection with the token gets in while the flood fills the budget.
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5,
                              headers=auth) as late:
                assert late.get("/health").status_code == 200
        finally:
            flood.close()
        print(f"/health over the Unix socket: max {max(health_s) * 1000:.0f} ms "
              f"({len(health_s)} requests); {served} authenticated TCP requests served; "
              f"{flood.reopened} attacker connections closed by the daemon and re-opened; "
              f"still open: {dict(held)}")
        assert max(health_s) < 1.0
        assert sum(held.values()) <= TCP_CAP, held
        assert max(held.values()) <= PER_PEER, held
        assert flood.reopened >= ATTACKERS - TCP_CAP
    assert nofile_soft(daemon.proc.pid) == OPEN_FILES  # raised from 1,024
    with daemon.http(timeout=1.0) as unix:
        assert unix.get("/health").status_code == 200


def test_a_new_client_with_the_token_is_served_during_the_flood(
    tcp_daemon: tuple[RunningDaemon, int],
) -> None:
    """Each request on a connection of its own, opened while the flood goes on. Before the
    budget let a newcomer whose request has arrived close a young silent connection (at
    04af615, main's admission), 8 of 43 such clients were refused with a 503: every
    connection in the TCP budget was younger than ``connections.GRACE_S``, all spared."""
    daemon, port = tcp_daemon
    token = (daemon.runtime / "token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    statuses: Counter[int] = Counter()
    with soft_nofile(4 * ATTACKERS):
        flood = Flood(port)
        try:
            flood.start()
            time.sleep(1.0)  # the flood fills the budget
            reopened = flood.reopened
            deadline = time.monotonic() + 3.0
            # 3 s and at least NEW_CLIENTS clients: a slow machine fits fewer in 3 s (19 in CI
            # at 969ef8f, all served).
            while time.monotonic() < deadline or statuses.total() < NEW_CLIENTS:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5,
                                  headers=auth) as fresh:
                    statuses[fresh.get("/api/status").status_code] += 1
                time.sleep(0.05)
            reopened = flood.reopened - reopened
        finally:
            flood.stop()
            flood.close()
    print(f"new clients during the flood: {dict(statuses)}; {reopened} attacker connections "
          "closed and re-opened meanwhile")
    assert reopened > TCP_CAP, "the flood stopped before the clients came"
    assert statuses[200] >= NEW_CLIENTS and set(statuses) == {200}, statuses
