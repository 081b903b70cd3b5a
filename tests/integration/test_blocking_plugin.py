"""Blocking calls (``time.sleep``) in a plugin's skills, in the real daemon.

A skill on its own thread (``own_loop``, the default) stalls no one: another client's turn and
``daemon status`` are answered while it sleeps, and the skill timeout cuts its turn. A skill
that asked to run on the daemon's loop (``own_loop = False``) holds the loop: meanwhile
``assistant daemon status`` says the daemon is busy (not "not running"); once it lets go, the
log and ``daemon status`` name the plugin and the line that held it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from assistant.testing import daemon_environment
from tests.conftest import TEST_MODELS_DIR
from tests.installed import install_plugin, python_path
from tests.integration.conftest import CHAT_MODEL, start_daemon

pytestmark = pytest.mark.integration

PLUGIN = '''
import time

from assistant import DeltaEvent, Skill, hookimpl


class Sleepy(Skill):
    name = "sleepy"
    examples = ("take a nap",)

    async def run(self, turn, ctx):
        time.sleep(6)
        yield DeltaEvent("awake")


class Sleepwalker(Skill):
    name = "sleepwalker"
    examples = ("walk in your sleep",)
    own_loop = False

    async def run(self, turn, ctx):
        time.sleep(10)
        yield DeltaEvent("awake")


class Shout(Skill):
    name = "shout"
    examples = ("shout this",)

    async def run(self, turn, ctx):
        yield DeltaEvent(turn.text.upper())


@hookimpl
def register_skills(register):
    register(Sleepy())
    register(Sleepwalker())
    register(Shout())
'''


def test_blocking_skills_stall_no_one_on_their_thread_and_are_named_on_the_loop(
        tmp_path: Path, short_tmp: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site, "sleepy_skills", PLUGIN, "sleepy")
    env = daemon_environment(tmp_path / "data", short_tmp / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR, extra_env={
                                 "PYTHONPATH": python_path(site),
                                 "ASSISTANT_PLUGINS__SKILL_TIMEOUT": "3"})
    daemon = start_daemon(env, tmp_path / "daemon.log")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assistant", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    replies: dict[str, str] = {}

    def send(text: str) -> None:
        with daemon.http() as http:
            replies[text] = http.post("/api/turns", json={"text": text}).text

    try:
        napping = threading.Thread(target=send, args=("/sleepy now",))
        started = time.monotonic()
        napping.start()
        time.sleep(0.5)
        send("/shout still here")
        shouted_after = time.monotonic() - started
        status = cli("daemon", "status")
        napping.join(30)
        # While the other skill slept: a loop it blocked would answer after its 6 s nap. (It was
        # < 2.5 s, and a loaded CI machine answered in 2.78 s.)
        assert shouted_after < 5.0, shouted_after
        assert "STILL HERE" in replies["/shout still here"]
        assert status.returncode == 0 and "busy" not in status.stdout + status.stderr
        assert "took longer than 3 s" in replies["/sleepy now"]
        assert "blocked the daemon" not in cli("daemon", "status").stdout

        walking = threading.Thread(target=send, args=("/sleepwalker now",))
        walking.start()
        time.sleep(1.0)
        busy = cli("daemon", "status")
        assert busy.returncode == 1 and "the daemon is running but busy" in busy.stderr
        walking.join(30)
        status = cli("daemon", "status")
    finally:
        daemon.stop()
    log = daemon.log_text()
    assert "the event loop has been blocked for" in log and "by plugin sleepy at" in log
    assert "sleepy_skills.py" in log
    assert status.returncode == 0, status.stderr
    assert "plugin 'sleepy' blocked the daemon's event loop for" in status.stdout
    assert "sleepy_skills.py:" in status.stdout and "in run" in status.stdout
