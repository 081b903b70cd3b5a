"""Hostile HTTP clients against the real daemon: TCP access, rebinding, CORS, sizes, slowness.

One daemon serves the whole module, on its Unix socket and on a loopback TCP port.

Each test was run with its protection taken out (the code changed, the test run, the file
restored byte for byte and ``git diff`` checked), and failed as follows:
- loopback: ``bind_tcp`` defaulting an empty host to 0.0.0.0 → ``['00000000']`` listening.
- token required: ``TokenGuard``'s token check disabled → ``/health`` without a token is 200.
- never from the query: ``TokenGuard`` also taking ``?token=`` → ``/api/status?token=…`` is 200.
- Host allow-list: the Host check disabled → ``Host: evil.example:PORT`` answered 200.
- no CORS: ``CORSMiddleware(allow_origins=["*"])`` added → ``access-control-allow-*`` headers.
- constant time: ``given != self.token`` instead of ``hmac.compare_digest`` → spy saw no call.
- body limit: ``BodyLimit`` passing the raw ``receive`` on → the chunked body over it got 200.
- header flood: both head checks of ``BodyLimit`` off → the 200 KB head answered 200; only the
  100-field check off → the 150-field head (under 32 KB) answered 200.
- slow client: ``GuardedH11Protocol._arm`` not arming its timer → "kept its connection".
- redaction: ``RedactErrors`` removed → "the file of model 'gone' is gone: /tmp/…" leaked.
  (Run on a copy of the committed tree with the ``/api/turns`` probe tolerating a cut stream:
  since the context-budget commit a5fa249 that probe's stream is cut without an error event,
  so this test fails on main until turns.py turns that ModelNotFound into an error event.)
- peer uid: the ``transport.abort()`` for another user's connection removed → answered 200.
"""

from __future__ import annotations

import contextlib
import getpass
import hmac
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.daemon.protocol import REQUEST_TIMEOUT_S
from assistant.testing import RunningDaemon, daemon_environment, start_daemon
from tests.conftest import TEST_MODELS_DIR
from tests.integration.conftest import CHAT_MODEL, require_models
from tests.reliability.ggufs import models_add, tiny

BODY_LIMIT = 16 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningDaemon, int, str]]:
    require_models()
    import shutil
    import tempfile

    base = tmp_path_factory.mktemp("http")
    runtime = Path(tempfile.mkdtemp(prefix="ah-", dir="/tmp"))
    port = free_port()
    env = daemon_environment(base / "data", runtime / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR, extra_env={
                                 "ASSISTANT_DAEMON__TCP": f'":{port}"',
                                 "ASSISTANT_DAEMON__MAX_BODY_BYTES": str(BODY_LIMIT)})
    daemon = start_daemon(env, base / "daemon.log")
    token = (daemon.runtime / "token").read_text().strip()
    yield daemon, port, token
    daemon.stop()
    shutil.rmtree(runtime, ignore_errors=True)


def tcp(port: int, **kwargs: object) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, **kwargs)  # type: ignore[arg-type]


def test_tcp_listens_on_loopback_only_when_no_host_is_given(
    served: tuple[RunningDaemon, int, str],
) -> None:
    _, port, _ = served
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"], listening  # 127.0.0.1, and nothing else


def test_tcp_always_requires_the_token_and_never_from_the_query(
    served: tuple[RunningDaemon, int, str],
) -> None:
    _, port, token = served
    with tcp(port) as http:
        assert http.get("/health").status_code == 401
        assert http.get("/health", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert http.get("/health", headers={"Authorization": token}).status_code == 401
        for name in ("token", "access_token", "api_key", "key", "auth"):
            assert http.get("/api/status", params={name: token}).status_code == 401, name
        assert http.get("/health", headers={"Cookie": f"token={token}"}).status_code == 401
        ok = http.get("/api/status", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200


def test_host_outside_the_allow_list_is_forbidden(served: tuple[RunningDaemon, int, str]) -> None:
    _, port, token = served
    auth = {"Authorization": f"Bearer {token}"}
    with tcp(port) as http:
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.nip.io:{port}",
                     f"localhost.evil.example:{port}", ""):
            response = http.get("/health", headers={**auth, "Host": host})
            assert response.status_code in (400, 403), (host, response.status_code)
        assert http.get("/health", headers={**auth, "Host": f"localhost:{port}"}).is_success


def test_no_cors_for_other_origins(served: tuple[RunningDaemon, int, str]) -> None:
    daemon, port, token = served
    origin = {"Origin": "http://evil.example"}
    with tcp(port) as http:
        preflight = http.options("/v1/chat/completions", headers={
            **origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        simple = http.get("/health", headers={**origin, "Authorization": f"Bearer {token}"})
    with daemon.http() as http:
        local = http.get("/health", headers=origin)
    for response in (preflight, simple, local):
        assert not any(k.lower().startswith("access-control-allow") for k in response.headers)
    assert preflight.status_code >= 400


def test_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard must use hmac.compare_digest (a timing test is too noisy on shared cores)."""
    import asyncio

    from assistant.daemon import middleware

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("reached the app with a wrong token")

    guard = middleware.TokenGuard(app, "s3cret", {"localhost:1"})
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "server": ("127.0.0.1", 1), "headers": [
        (b"host", b"localhost:1"), (b"authorization", b"Bearer s3creX")]}
    asyncio.run(guard(scope, receive, send))  # type: ignore[arg-type]
    assert calls == [(b"s3creX", b"s3cret")]
    assert sent[0]["status"] == 401


def test_bodies_over_the_limit_get_413(served: tuple[RunningDaemon, int, str]) -> None:
    daemon, _, _ = served
    big = b'{"text": "' + b"x" * (4 * BODY_LIMIT) + b'"}'

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    with daemon.http() as http:
        stated = http.post("/api/turns", content=big,
                           headers={"Content-Type": "application/json"})
        chunked = http.post("/api/turns", content=chunks(),
                            headers={"Content-Type": "application/json"})
        assert http.get("/health").status_code == 200
    assert stated.status_code == 413 and chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "body_too_large"


def raw_exchange(path: Path, payload: bytes, wait: float = 10) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(wait)
        s.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return out


def test_header_floods_are_refused(served: tuple[RunningDaemon, int, str]) -> None:
    daemon, _, _ = served
    one_huge = b"GET /health HTTP/1.1\r\nHost: a\r\nX-Flood: " + b"a" * 200_000 + b"\r\n\r\n"
    many = b"GET /health HTTP/1.1\r\nHost: a\r\n" + b"".join(
        b"X-%d: v\r\n" % i for i in range(20_000)) + b"\r\n"
    # Over the 100-field cap but far under the 32 KB one: only the field count refuses it.
    many_small = b"GET /health HTTP/1.1\r\nHost: a\r\n" + b"".join(
        b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n"
    for payload in (one_huge, many, many_small):
        answer = raw_exchange(daemon.socket, payload)
        assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    with daemon.http() as http:
        assert http.get("/health").status_code == 200


def test_slow_clients_are_cut_off(served: tuple[RunningDaemon, int, str]) -> None:
    daemon, _, _ = served
    started = time.monotonic()
    closed_after = None
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(daemon.socket))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\n")
        s.settimeout(1.0)
        while time.monotonic() - started < REQUEST_TIMEOUT_S + 15:
            try:
                s.sendall(b"X")  # one byte a second: each header arrives, none ever ends
                if s.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "a slowloris client kept its connection"
    assert closed_after < REQUEST_TIMEOUT_S + 5
    with daemon.http() as http:
        assert http.get("/health").status_code == 200


def test_error_responses_carry_no_paths_user_or_token(
    served: tuple[RunningDaemon, int, str], tmp_path: Path
) -> None:
    daemon, port, token = served
    model = tiny(tmp_path / "gone.gguf")
    assert models_add(daemon.env, model, "gone").returncode == 0
    model.unlink()
    data = daemon.env["ASSISTANT_DATA_DIR"]
    bodies = []
    with daemon.http() as http:
        bodies.append(http.post("/api/models/gone/load").text)
        bodies.append(http.post("/v1/chat/completions", json={
            "model": "gone", "messages": [{"role": "user", "content": "hi"}]}).text)
        bodies.append(http.post("/api/turns", json={
            "text": "hi", "model": "gone", "skill": "chat"}).text)
        bodies.append(http.post("/api/turns", content=b"{not json").text)
        bodies.append(http.get(f"/api/conversations/{data}").text)
        bodies.append(http.get("/nothing/here").text)
        bodies.append(http.post("/api/import", content=b"\xff\xfe garbage").text)
    with tcp(port) as http:
        bodies.append(http.get("/health", headers={"Authorization": f"Bearer {token}x"}).text)
        bodies.append(http.get("/health", headers={"Authorization": f"Bearer {token}",
                                                   "Host": "evil"}).text)
    assert any("gone" in b for b in bodies[:3]), bodies[:3]
    user = getpass.getuser()
    for body in bodies:
        assert token not in body
        assert str(tmp_path) not in body and data not in body and "/tmp/" not in body, body
        assert os.path.expanduser("~") + "/" not in body, body
        if len(user) >= 3:
            assert f"/{user}" not in body and f"'{user}'" not in body, body


def test_connections_from_another_user_are_closed(served: tuple[RunningDaemon, int, str]) -> None:
    """Widen the socket's permissions as a misconfiguration would; uid 65534 still gets nothing."""
    daemon, _, _ = served
    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    request = b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    widened = [daemon.runtime.parent, daemon.runtime, daemon.socket]
    modes = {p: p.stat().st_mode & 0o777 for p in widened}
    for path in widened:
        os.chmod(path, 0o777 if path == daemon.socket else 0o755)
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become nobody, then ask
            try:
                os.close(read_end)
                os.setgid(65534)
                os.setuid(65534)
                answer = raw_exchange(daemon.socket, request, wait=10)
                os.write(write_end, b"ANSWER:" + answer[:100])
            except BaseException as exc:
                os.write(write_end, f"FAILED:{exc!r}".encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as fh:
            result = fh.read()
        os.waitpid(pid, 0)
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)
    assert result.startswith(b"ANSWER:"), result  # it could connect: the check is what stops it
    assert result == b"ANSWER:", result
    assert raw_exchange(daemon.socket, request).startswith(b"HTTP/1.1 200")
