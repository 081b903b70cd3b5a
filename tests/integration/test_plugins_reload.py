"""``assistant plugins reload`` on the real daemon: a turn under way finishes first, then the
daemon starts again in place (same pid, a new ``started_at``) with the plugin code as it is
now, and a client talks to it as before. A TCP client keeps its token across a reload, and may
not ask for one (403); a SIGTERM during its grace is a graceful stop with no start after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from assistant.testing import daemon_environment
from tests.conftest import TEST_MODELS_DIR
from tests.installed import install_plugin, python_path
from tests.integration.conftest import CHAT_MODEL, start_daemon
from tests.integration.test_summarize_over_tcp import free_port

pytestmark = pytest.mark.integration

PLUGIN = '''
import asyncio

from assistant import DeltaEvent, Skill, hookimpl


class Tortoise(Skill):
    name = "tortoise"
    examples = ("slow and steady",)

    async def run(self, turn, ctx):
        yield DeltaEvent("slow ")
        await asyncio.sleep(3)
        yield DeltaEvent("and steady VERSION")


@hookimpl
def register_skills(register):
    register(Tortoise())
'''


def test_reload_lets_a_turn_finish_then_serves_the_new_code(
        tmp_path: Path, short_tmp: Path) -> None:
    site = tmp_path / "site"
    module = install_plugin(site, "tortoise_skills", PLUGIN.replace("VERSION", "v1"), "tortoise")
    env = daemon_environment(tmp_path / "data", short_tmp / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR, extra_env={
                                 "PYTHONPATH": python_path(site)})
    daemon = start_daemon(env, tmp_path / "daemon.log")
    lines: list[str] = []
    begun = threading.Event()

    def walk() -> None:
        with daemon.http() as http, http.stream("POST", "/api/turns",
                                                json={"text": "/tortoise go"}) as response:
            for line in response.iter_lines():
                lines.append(line)
                if '"delta"' in line:
                    begun.set()

    try:
        with daemon.http() as http:
            before = http.get("/health").json()["started_at"]
        walking = threading.Thread(target=walk)
        walking.start()
        assert begun.wait(30)  # the turn is under way: its first piece has arrived
        module.write_text(textwrap.dedent(PLUGIN).replace("VERSION", "v2"))
        reloaded = subprocess.run([sys.executable, "-m", "assistant", "plugins", "reload"],
                                  env=env, capture_output=True, text=True, timeout=120)
        walking.join(30)
        assert reloaded.returncode == 0, reloaded.stderr
        assert "daemon reloaded (" in reloaded.stdout and "tortoise" in reloaded.stdout
        with daemon.http() as http:
            health = http.get("/health").json()
            again = http.post("/api/turns", json={"text": "/tortoise go"}).text
        assert daemon.proc.poll() is None  # the same process, started again in place
    finally:
        daemon.stop()
    deltas = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert "".join(e["text"] for e in deltas if e["type"] == "delta") == "slow and steady v1"
    assert deltas[-1]["type"] == "done" and deltas[-1]["status"] == "complete"
    assert health["started_at"] != before
    # Joined: the bundled guard holds back a reply's end while it could grow into a secret,
    # so "v2" may come in a delta of its own.
    again_events = [json.loads(line[5:]) for line in again.splitlines()
                    if line.startswith("data:")]
    assert "".join(e["text"] for e in again_events if e["type"] == "delta") == \
        "slow and steady v2"
    log = daemon.log_text()
    assert "reload requested" in log and "daemon restarting to reload plugins" in log


def test_a_reload_keeps_the_tcp_token_and_is_refused_over_tcp(
        tmp_path: Path, short_tmp: Path) -> None:
    port = free_port()
    env = daemon_environment(tmp_path / "data", short_tmp / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR,
                             extra_env={"ASSISTANT_DAEMON__TCP": f'":{port}"'})
    daemon = start_daemon(env, tmp_path / "daemon.log")
    token_file = daemon.runtime / "token"
    token = token_file.read_text().strip()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as tcp:
            refused = tcp.post("/api/plugins/reload")
            before = tcp.get("/health").json()["started_at"]
        reloaded = subprocess.run([sys.executable, "-m", "assistant", "plugins", "reload"],
                                  env=env, capture_output=True, text=True, timeout=120)
        assert reloaded.returncode == 0, reloaded.stderr
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as tcp:
            after = tcp.get("/health")
        kept = token_file.read_text().strip()
        mode = token_file.stat().st_mode & 0o777
    finally:
        daemon.stop()
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "local_only"
    assert "Unix socket" in refused.json()["error"]["message"]
    assert after.status_code == 200, after.text  # the old token still opens the TCP port
    assert after.json()["started_at"] != before
    assert kept == token and mode == 0o600

    # A fresh start (not a reload) makes a new token.
    again = start_daemon(env, tmp_path / "daemon-2.log")
    try:
        fresh = token_file.read_text().strip()
    finally:
        again.stop()
    assert fresh != token


def test_a_stop_during_a_reloads_grace_stops_gracefully_without_starting_again(
        tmp_path: Path, short_tmp: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site, "tortoise_skills", PLUGIN.replace("VERSION", "v1"), "tortoise")
    env = daemon_environment(tmp_path / "data", short_tmp / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR, extra_env={
                                 "PYTHONPATH": python_path(site)})
    daemon = start_daemon(env, tmp_path / "daemon.log")
    lines: list[str] = []
    begun = threading.Event()

    def walk() -> None:
        with daemon.http() as http, http.stream("POST", "/api/turns",
                                                json={"text": "/tortoise go"}) as response:
            for line in response.iter_lines():
                lines.append(line)
                if '"delta"' in line:
                    begun.set()

    walking = threading.Thread(target=walk)
    try:
        walking.start()
        assert begun.wait(30)
        with daemon.http() as http:
            assert http.post("/api/plugins/reload").status_code == 200
        deadline = time.monotonic() + 10
        while "reload requested" not in daemon.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reload requested" in daemon.log_text()
        code = daemon.stop()  # SIGTERM while the turn is still under way
        walking.join(30)
    finally:
        daemon.stop()
    deltas = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert "".join(e["text"] for e in deltas if e["type"] == "delta") == "slow and steady v1"
    assert deltas[-1]["type"] == "done" and deltas[-1]["status"] == "complete"
    assert code == 0
    log = daemon.log_text()
    assert "stop requested during a reload" in log and "daemon stopped" in log
    assert "daemon restarting to reload plugins" not in log
    assert not (daemon.runtime / "token").exists()  # stopped for good: nothing kept
