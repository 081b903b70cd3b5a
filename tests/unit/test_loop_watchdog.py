"""A blocked event loop is seen and blamed: the watchdog names the plugin whose code held it, in
the log and (third-party plugins) as a problem; a client tells a daemon that holds its socket
without answering ("busy") from one that is not running. The same through the real daemon:
tests/integration/test_blocking_plugin.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.client import Client
from assistant.config import load_settings
from assistant.daemon.watchdog import LoopWatchdog
from assistant.plugins import PluginInfo


async def slow_skill_step() -> None:
    time.sleep(0.8)  # the blocking call a plugin should not make


def owner(module: str) -> PluginInfo | None:
    return PluginInfo("units") if module == __name__ else None


def test_a_blocking_plugin_is_named_in_the_log_and_the_problems(
        caplog: pytest.LogCaptureFixture) -> None:
    watchdog = LoopWatchdog(owner, blocked_after=0.3)

    async def go() -> None:
        watchdog.start()
        try:
            await asyncio.sleep(0.3)
            await slow_skill_step()
            await asyncio.sleep(0.6)  # the loop turns again: the block is over
        finally:
            watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="assistant.daemon.watchdog"):
        asyncio.run(go())
    [problem] = watchdog.problems()
    assert problem.startswith("plugin 'units' blocked the daemon's event loop for ")
    assert "test_loop_watchdog.py" in problem and "in slow_skill_step" in problem
    assert "asyncio.to_thread" in problem
    assert "blocked for" in caplog.text and "by plugin units at" in caplog.text
    assert "turns again after" in caplog.text


def test_blocks_of_bundled_plugins_and_the_core_are_logged_only(
        caplog: pytest.LogCaptureFixture) -> None:
    watchdog = LoopWatchdog(lambda m: PluginInfo("chat", bundled=True) if m == __name__
                            else None, blocked_after=0.3)

    async def go() -> None:
        watchdog.start()
        try:
            await asyncio.sleep(0.3)
            await slow_skill_step()
            await asyncio.sleep(0.6)
        finally:
            watchdog.stop()

    with caplog.at_level(logging.WARNING, logger="assistant.daemon.watchdog"):
        asyncio.run(go())
    assert watchdog.problems() == []
    assert "by plugin chat" in caplog.text


def test_a_daemon_that_holds_its_socket_without_answering_is_busy_not_absent(
        short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "HEALTH_TIMEOUT_S", 0.3)
    settings = load_settings()
    client = Client(settings)
    client.socket.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as stuck:  # listens, never answers: a blocked loop
        stuck.bind(str(client.socket))
        stuck.listen(8)
        assert client.health() is None and client.busy
        status = CliRunner().invoke(main, ["daemon", "status"])
        assert status.exit_code == 1
        assert "the daemon is running but busy" in status.output
        assert "not running" not in status.output
        listed = CliRunner().invoke(main, ["plugins", "list"])
        assert listed.exit_code == 1 and "busy" in listed.output
    client.socket.unlink()
    assert client.health() is None and not client.busy
    client.close()
