"""The CLI as a user types it: `ask` starts the daemon, `daemon status|stop` manage it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import CHAT_MODEL

pytestmark = pytest.mark.integration


def assistant(env: dict[str, str], *args: str, stdin: str | None = None,
              timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_ask_starts_the_daemon_streams_and_daemon_commands_manage_it(
    daemon_env: dict[str, str],
) -> None:
    runtime = Path(daemon_env["ASSISTANT_RUNTIME_DIR"])
    try:
        first = assistant(daemon_env, "ask", "--model", CHAT_MODEL, "--max-tokens", "8",
                          "Say hello.")
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip()
        assert (runtime / "assistant.sock").exists()

        piped = assistant(daemon_env, "ask", "--json", "--max-tokens", "8", "--temperature", "0",
                          "Summarize this:", "-", stdin="The cat sat on the mat all day.")
        assert piped.returncode == 0, piped.stderr
        result = json.loads(piped.stdout)
        assert result["text"] and result["route"]["type"] == "route"
        assert result["done"]["usage"]["completion_tokens"] > 0

        status = assistant(daemon_env, "daemon", "status", "--json")
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["status"] == "ready"
        assert info["socket"] == str(runtime / "assistant.sock")
        assert info["llama_cpp"]
        assert CHAT_MODEL in [m["name"] for m in info["models"]]

        again = assistant(daemon_env, "daemon", "start")
        assert "already running" in again.stdout
    finally:
        stopped = assistant(daemon_env, "daemon", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not (runtime / "assistant.sock").exists()
    after = assistant(daemon_env, "daemon", "status")
    assert after.returncode == 1
    assert "not running" in after.stderr
    assert "Traceback" not in after.stderr


def test_ask_with_nothing_to_ask_is_a_usage_error(daemon_env: dict[str, str]) -> None:
    result = assistant(daemon_env, "ask", "-", stdin="   ")
    assert result.returncode == 2
    assert "nothing to ask" in result.stderr
