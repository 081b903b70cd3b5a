"""summarize reads files for this machine's user only (issue 18): over the loopback TCP port
(any process with the token, a browser page's fetch…) ``summarize ./x`` and ``summarize
/etc/hostname`` are refused with a clear 400, on /api/turns and /v1; over the Unix socket a
file named by its absolute path is read, a relative one refused."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import start_daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def events_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def test_summarize_reads_files_only_over_the_unix_socket(daemon_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    port = free_port()
    daemon_env["ASSISTANT_DAEMON__TCP"] = f'":{port}"'
    notes = tmp_path / "notes.txt"
    notes.write_text("The meeting moved to Tuesday. Bring the quarterly figures.")
    daemon = start_daemon(daemon_env, tmp_path / "daemon.log")
    try:
        token = (daemon.runtime / "token").read_text().strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as tcp:
            for text in ("/summarize ./x", "/summarize /etc/hostname", f"/summarize {notes}"):
                reply = tcp.post("/api/turns", json={"text": text, "max_tokens": 16})
                assert reply.status_code == 200, reply.text
                error = events_of(reply.text)[-1]
                assert error["type"] == "error" and error["status"] == 400, error
                assert error["code"] == "unsupported_input"
                assert "summarize reads files only for requests over the daemon's Unix " \
                       "socket, never over TCP" in error["message"]
            v1 = tcp.post("/v1/chat/completions", json={
                "model": "assistant", "max_tokens": 16,
                "messages": [{"role": "user", "content": "/summarize /etc/hostname"}]})
            assert v1.status_code == 400 and "never over TCP" in v1.text
        with daemon.http(timeout=60) as unix:
            read = events_of(unix.post("/api/turns", json={
                "text": f"/summarize {notes}", "max_tokens": 16, "temperature": 0}).text)
            assert read[-1]["type"] == "done" and read[-1]["status"] == "complete", read
            relative = events_of(unix.post("/api/turns", json={
                "text": "/summarize ./notes.txt", "max_tokens": 16}).text)[-1]
            assert relative["status"] == 400 and "absolute path" in relative["message"]
            plugins = unix.get("/api/plugins").json()["plugins"]
        summarize = next(p for p in plugins if p["name"] == "summarize")
        assert summarize["health"]["summarize"]["failures"] == 0  # the caller's, never its own
    finally:
        daemon.stop()
