"""The example third-party plugin, installed into a temp dir, runs end to end through the daemon.

The package is pip-installed with ``--target``; that dir goes on the daemon's PYTHONPATH only,
so the daemon finds the skill through the ``assistant`` entry point like any installed plugin.
The daemon is started with :mod:`assistant.testing`'s helpers, the kit plugin authors use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from assistant.testing import RunningDaemon, daemon_environment, start_daemon
from tests.conftest import REPO, TEST_MODELS_DIR
from tests.integration.conftest import CHAT_MODEL, require_models


def test_example_plugin_skill_runs_through_the_daemon(tmp_path: Path, short_tmp: Path) -> None:
    require_models()
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
         "--target", str(site), str(REPO / "examples" / "assistant-shout")],
        check=True, capture_output=True, timeout=300,
    )
    env = daemon_environment(tmp_path / "data", short_tmp / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR, extra_env={"PYTHONPATH": str(site)})
    daemon: RunningDaemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        with daemon.http() as http:
            events = []
            with http.stream("POST", "/api/turns", json={
                    "text": "hello there", "skill": "shout", "max_tokens": 4,
                    "temperature": 0}) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        events.append(json.loads(line[5:]))
    finally:
        daemon.stop()
    route, last = events[0], events[-1]
    assert route["type"] == "route" and route["skill"] == "shout"
    assert last["type"] == "done" and last["status"] == "complete" and last["skill"] == "shout"
    text = "".join(e["text"] for e in events if e["type"] == "delta")
    assert text.startswith("HELLO THERE\n") and len(text) > len("HELLO THERE\n")
