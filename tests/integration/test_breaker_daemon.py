"""The circuit breaker in the real daemon on smollm2-135m: killing the model host never disables
chat (issue 18); a third-party plugin's failing skill is shown, set aside alone and re-armed
through the CLI, and `ask` tells a cut reply and an unknown skill from success (issue 20); a
text past the context is the caller's error (issue 21).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.testing import RunningDaemon, daemon_environment
from tests.conftest import TEST_MODELS_DIR
from tests.installed import install_plugin, python_path
from tests.integration.conftest import CHAT_MODEL, start_daemon

pytestmark = pytest.mark.integration

STORY = "/chat Write a very long story about a dragon."

PLUGIN = '''
import asyncio

from assistant import DeltaEvent, Skill, hookimpl


class Units(Skill):
    name = "units"
    examples = ("convert 5 miles to km",)

    async def run(self, turn, ctx):
        raise RuntimeError("conversion table missing")
        yield DeltaEvent("")


class Shout(Skill):
    name = "shout"
    examples = ("shout this",)

    async def run(self, turn, ctx):
        yield DeltaEvent(turn.text.upper())


class Slow(Skill):
    name = "slow"
    examples = ("take your time",)

    async def run(self, turn, ctx):
        await asyncio.sleep(60)
        yield DeltaEvent("late")


@hookimpl
def register_skills(register):
    register(Units())
    register(Shout())
    register(Slow())
'''


def host_pid(daemon: RunningDaemon) -> int:
    with daemon.http() as http:
        pid = http.get("/api/status").json()["host_pid"]
    assert isinstance(pid, int)
    return pid


def kill_host_mid_stream(daemon: RunningDaemon, path: str, body: dict[str, object]) -> str:
    """Stream a long reply and SIGKILL the model host after its third piece; the last frame
    (before OpenAI's ``[DONE]``)."""
    pieces, last = 0, ""
    with daemon.http() as http, http.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            if line[5:].strip() == "[DONE]":
                continue
            last = line[5:].strip()
            if '"delta"' in last or '"content"' in last:
                pieces += 1
                if pieces == 3:
                    os.kill(host_pid(daemon), signal.SIGKILL)
    return last


def test_five_host_crashes_in_a_row_leave_chat_available(
        daemon_env: dict[str, str], tmp_path: Path) -> None:
    daemon = start_daemon(daemon_env, tmp_path / "daemon.log")
    try:
        for i in range(5):
            if i % 2 == 0:
                last = kill_host_mid_stream(daemon, "/v1/chat/completions", {
                    "model": "assistant", "stream": True, "max_tokens": 1500,
                    "messages": [{"role": "user", "content": STORY}]})
                assert "the model host stopped" in json.loads(last)["error"]["message"]
            else:
                last = kill_host_mid_stream(daemon, "/api/turns",
                                            {"text": STORY, "max_tokens": 1500})
                error = json.loads(last)
                assert error["type"] == "error" and error["code"] == "model_unavailable"
                assert error["status"] == 503 and error["retry_after"] == 1
        with daemon.http() as http:
            reply = http.post("/v1/chat/completions", json={
                "model": "assistant", "max_tokens": 4,
                "messages": [{"role": "user", "content": "/chat hi"}]})
            status = http.get("/api/status").json()
            plugins = http.get("/api/plugins").json()["plugins"]
    finally:
        daemon.stop()
    assert reply.status_code == 200, reply.text
    assert status["problems"] == []
    chat = next(p for p in plugins if p["name"] == "chat")
    assert chat["health"]["chat"] == {**chat["health"]["chat"], "state": "available",
                                      "failures": 0}


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_a_failing_plugin_skill_through_the_cli(tmp_path: Path, short_tmp: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site, "flaky_skills", PLUGIN, "flaky")
    env = daemon_environment(tmp_path / "data", short_tmp / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR, extra_env={
                                 "PYTHONPATH": python_path(site),
                                 "ASSISTANT_PLUGINS__MAX_FAILURES": "2",
                                 "ASSISTANT_PLUGINS__SKILL_TIMEOUT": "2",
                                 "ASSISTANT_PLUGINS__COOLDOWN": "0"})
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        for _ in range(2):
            failed = cli(env, "ask", "--skill", "units", "5 miles in km")
            assert failed.returncode == 1
            assert "RuntimeError: conversion table missing" in failed.stderr
        assert "Traceback" in daemon.log_text() and "flaky" in daemon.log_text()

        listed = cli(env, "plugins", "list")
        assert listed.returncode == 0 and "not running" not in listed.stderr
        units_line = next(line for line in listed.stdout.splitlines() if "skills:" in line
                          and "units" in line)
        assert "units (disabled after 2 failures, until enabled; last error: skill 'units' " \
               "failed: RuntimeError: conversion table missing)" in units_line
        assert "shout," in units_line or units_line.rstrip().endswith("shout")
        assert "skill 'units'" in cli(env, "daemon", "status").stdout

        fallback = cli(env, "ask", "--max-tokens", "4", "@units 5 miles in km")
        assert fallback.returncode == 0, fallback.stderr
        assert "skill 'units' is disabled" in fallback.stderr and "chat answers" in \
            fallback.stderr
        shout = cli(env, "ask", "@shout hey there")
        assert shout.returncode == 0 and shout.stdout.strip() == "HEY THERE"

        unknown = cli(env, "ask", "/unitz 5 miles in km")
        assert unknown.returncode == 1 and "no skill named 'unitz'" in unknown.stderr
        assert "did you mean 'units'?" in unknown.stderr
        cut = cli(env, "ask", "--skill", "slow", "go")
        assert cut.returncode == 1 and "not complete (cancelled)" in cut.stderr
        assert "took longer than 2 s" in cut.stderr

        too_long = cli(env, "ask", "--skill", "chat", "-", stdin="word " * 3000)
        assert too_long.returncode == 1 and "context" in too_long.stderr

        enabled = cli(env, "plugins", "enable", "units")
        assert enabled.returncode == 0 and "enabled: units" in enabled.stdout
        assert "disabled" not in cli(env, "plugins", "list").stdout
        assert "problem" not in cli(env, "daemon", "status").stdout
    finally:
        daemon.stop()
