"""The model host runs the llama.cpp CPU variant it chose, says which, and refuses one this
machine cannot run (issue 17)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.models import cpu
from tests.integration.conftest import CHAT_MODEL, RunningDaemon, start_daemon

pytestmark = pytest.mark.integration

INSTALLED = cpu.installed()
needs_variants = pytest.mark.skipif(not INSTALLED, reason="llama.cpp built without CPU variants")


def chat(daemon: RunningDaemon) -> tuple[int, dict[str, object]]:
    with daemon.http() as http:
        reply = http.post("/v1/chat/completions", json={
            "model": CHAT_MODEL, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hi."}]})
        return reply.status_code, reply.json()


def variant(daemon: RunningDaemon) -> dict[str, str] | None:
    with daemon.http() as http:
        found: dict[str, str] | None = http.get("/api/status").json()["cpu_variant"]
        return found


def test_the_variant_in_use_is_the_best_this_machine_can_run_and_is_named(
        daemon: RunningDaemon) -> None:
    assert variant(daemon) is None  # nothing loaded yet: nothing chosen
    status, reply = chat(daemon)
    assert status == 200, reply
    running = variant(daemon)
    assert running is not None
    if INSTALLED:
        assert running["variant"] == cpu.choose(INSTALLED, cpu.usable_flags())[0].variant
    else:
        assert running == {"variant": None, "reason": "llama.cpp built for one CPU"}
    with daemon.http() as http:
        assert http.get("/health").json()["cpu_variant"] == running
    shown = subprocess.run([sys.executable, "-m", "assistant", "daemon", "status"],
                           env=daemon.env, capture_output=True, text=True, timeout=60)
    assert f"cpu        {running['variant'] or 'built in'} (" in shown.stdout
    model = subprocess.run([sys.executable, "-m", "assistant", "models", "show", CHAT_MODEL],
                           env=daemon.env, capture_output=True, text=True, timeout=60)
    assert re.search(rf"cpu variant: +{running['variant'] or 'built in'} \(", model.stdout)


@needs_variants
def test_a_forced_variant_runs_and_one_the_machine_cannot_run_stops_the_start(
        daemon_env: dict[str, str], tmp_path: Path) -> None:
    baseline = cpu.BASELINE if cpu.BASELINE in INSTALLED else sorted(INSTALLED)[0]
    daemon = start_daemon({**daemon_env, "ASSISTANT_MODELS__CPU_VARIANT": baseline},
                          tmp_path / "forced.log")
    try:
        status, reply = chat(daemon)
        assert status == 200 and reply["choices"]
        assert variant(daemon) == {"variant": baseline, "reason": "set by models.cpu_variant"}
    finally:
        daemon.stop()
    flags = cpu.usable_flags()
    unrunnable = [name for name, needs in cpu.VARIANTS if name in INSTALLED and not needs <= flags]
    if not unrunnable:
        pytest.skip("this machine runs every installed variant")
    refused = subprocess.run(
        [sys.executable, "-m", "assistant", "serve"], capture_output=True, text=True, timeout=60,
        env={**daemon_env, "ASSISTANT_MODELS__CPU_VARIANT": unrunnable[0]})
    assert refused.returncode == 2, refused.stderr
    assert f"models.cpu_variant = {unrunnable[0]!r} needs" in refused.stderr
    assert "Traceback" not in refused.stderr
