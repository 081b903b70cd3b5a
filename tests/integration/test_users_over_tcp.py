"""Users on the real daemon over TCP (issue 19), with tokens made by the real CLI while the
daemon runs: each sees their own conversations alone (another's answers 404, lists, search
and export never show it), a revoke is refused at the next request with no restart, the
owner (runtime token, Unix socket) is unaffected, and no token reaches the log or the
database in plain text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from assistant.store import db
from tests.integration.conftest import start_daemon
from tests.integration.test_summarize_over_tcp import events_of, free_port


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant", "users", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def client(port: int, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                        headers={"Authorization": f"Bearer {token}"})


def ask(http: httpx.Client, text: str) -> dict[str, Any]:
    reply = http.post("/api/turns", json={"text": f"/chat {text}", "max_tokens": 8,
                                           "temperature": 0})
    assert reply.status_code == 200, reply.text
    events = events_of(reply.text)
    assert events[-1]["type"] == "done", events
    return events[0]


def test_users_are_isolated_and_a_revoke_holds_at_once(daemon_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    port = free_port()
    daemon_env["ASSISTANT_DAEMON__TCP"] = f'":{port}"'
    daemon = start_daemon(daemon_env, tmp_path / "daemon.log")
    try:
        runtime_token = (daemon.runtime / "token").read_text().strip()
        added = {name: cli(daemon_env, "add", name) for name in ("alice", "bob")}
        for result in added.values():
            assert result.returncode == 0, result.stderr
        alice_token, bob_token = (added[n].stdout.strip() for n in ("alice", "bob"))
        with client(port, alice_token) as alice, client(port, bob_token) as bob, \
                client(port, runtime_token) as owner, daemon.http() as unix:
            theirs = ask(alice, "my pelican has a name")
            cid, mid = theirs["conversation_id"], theirs["message_id"]
            own = ask(owner, "the owner's pelican")
            assert [c["id"] for c in alice.get("/api/conversations").json()[
                "conversations"]] == [cid]
            assert bob.get("/api/conversations").json() == {"conversations": []}
            assert bob.get("/api/search", params={"q": "pelican"}).json() == {"hits": []}
            assert cid not in bob.get("/api/export").text
            for method, path in (("GET", f"/api/conversations/{cid}"),
                                 ("GET", f"/api/conversations/{cid}/export"),
                                 ("GET", f"/api/messages/{mid}"),
                                 ("DELETE", f"/api/conversations/{cid}")):
                assert bob.request(method, path).status_code == 404, (method, path)
            for peer in (owner, unix):
                listed = peer.get("/api/conversations").json()["conversations"]
                assert [c["id"] for c in listed] == [own["conversation_id"]]
                assert peer.get(f"/api/conversations/{cid}").status_code == 404
            listed = cli(daemon_env, "list")
            assert "alice" in listed.stdout and alice_token not in listed.stdout

            assert cli(daemon_env, "revoke", "bob").returncode == 0  # the daemon runs on
            refused = bob.get("/api/conversations")
            assert refused.status_code == 401, refused.text
            assert alice.get(f"/api/conversations/{cid}").status_code == 200
            assert owner.get("/health").status_code == 200
        assert daemon.proc.poll() is None
        log = daemon.log_text()
        assert alice_token not in log and bob_token not in log
        for suffix in ("", "-wal"):
            file = daemon.data / f"{db.DB_FILENAME}{suffix}"
            data = file.read_bytes() if file.exists() else b""
            assert alice_token.encode() not in data and bob_token.encode() not in data
        rows = json.loads(cli(daemon_env, "list", "--json").stdout)
        assert [(u["name"], u["revoked"] is None) for u in rows] == [
            ("alice", True), ("bob", False)]
    finally:
        daemon.stop()
