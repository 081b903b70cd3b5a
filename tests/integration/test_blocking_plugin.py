"""A plugin's skill that blocks the event loop (``time.sleep``) in the real daemon: while it
holds the loop, ``assistant daemon status`` says the daemon is busy (not "not running"); once
it lets go, the log and ``daemon status`` name the plugin and the line that held it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from assistant.testing import daemon_environment
from tests.conftest import TEST_MODELS_DIR
from tests.integration.conftest import CHAT_MODEL, start_daemon

pytestmark = pytest.mark.integration

PLUGIN = '''
import time

from assistant import DeltaEvent, Skill, hookimpl


class Sleepy(Skill):
    name = "sleepy"
    examples = ("take a nap",)

    async def run(self, turn, ctx):
        time.sleep(10)
        yield DeltaEvent("awake")


@hookimpl
def register_skills(register):
    register(Sleepy())
'''


def test_a_blocking_skill_makes_the_daemon_busy_and_is_named(
        tmp_path: Path, short_tmp: Path) -> None:
    site = tmp_path / "site"
    (site / "sleepy_skills-0.1.dist-info").mkdir(parents=True)
    (site / "sleepy_skills.py").write_text(textwrap.dedent(PLUGIN))
    (site / "sleepy_skills-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sleepy-skills\nVersion: 0.1\n")
    (site / "sleepy_skills-0.1.dist-info" / "entry_points.txt").write_text(
        "[assistant]\nsleepy = sleepy_skills\n")
    env = daemon_environment(tmp_path / "data", short_tmp / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR, extra_env={
                                 "PYTHONPATH": os.pathsep.join([str(site), *sys.path])})
    daemon = start_daemon(env, tmp_path / "daemon.log")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assistant", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    try:
        def nap() -> None:
            with daemon.http() as http:
                http.post("/api/turns", json={"text": "/sleepy now"})

        napping = threading.Thread(target=nap)
        napping.start()
        time.sleep(1.0)
        busy = cli("daemon", "status")
        assert busy.returncode == 1 and "the daemon is running but busy" in busy.stderr
        napping.join(30)
        status = cli("daemon", "status")
    finally:
        daemon.stop()
    log = daemon.log_text()
    assert "the event loop has been blocked for" in log and "by plugin sleepy at" in log
    assert "sleepy_skills.py" in log
    assert status.returncode == 0, status.stderr
    assert "plugin 'sleepy' blocked the daemon's event loop for" in status.stdout
    assert "sleepy_skills.py:" in status.stdout and "in run" in status.stdout
