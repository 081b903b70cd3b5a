"""Model residency: load and unload on request, keep-alive, and the memory budget."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import CHAT_MODEL, EMBED_MODEL, RunningDaemon, start_daemon

pytestmark = pytest.mark.integration


def loaded(daemon: RunningDaemon) -> set[str]:
    with daemon.http() as http:
        return {m["name"] for m in http.get("/api/status").json()["models"]}


def test_load_and_unload_commands(daemon: RunningDaemon) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assistant", "models", *args],
                              env=daemon.env, capture_output=True, text=True, timeout=300)

    done = cli("load", CHAT_MODEL)
    assert done.returncode == 0, done.stderr
    assert f"{CHAT_MODEL} loaded (chat)" in done.stdout
    assert CHAT_MODEL in loaded(daemon)
    gone = cli("unload", CHAT_MODEL)
    assert gone.returncode == 0 and f"{CHAT_MODEL} unloaded" in gone.stdout
    assert CHAT_MODEL not in loaded(daemon)
    missing = cli("load", "no-such-model")
    assert missing.returncode == 1 and "no-such-model" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_keep_alive_zero_unloads_after_the_request(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    daemon = start_daemon({**daemon_env, "ASSISTANT_MODELS__KEEP_ALIVE": "0"}, tmp_path / "d.log")
    try:
        with daemon.http() as http:
            reply = http.post("/v1/chat/completions", json={
                "model": CHAT_MODEL, "max_tokens": 2,
                "messages": [{"role": "user", "content": "hi"}]})
            assert reply.status_code == 200
        assert CHAT_MODEL not in loaded(daemon)
    finally:
        daemon.stop()


def test_memory_budget_evicts_the_least_recently_used(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    # 150 MiB holds the chat model (94 MiB of file and 45 MiB of KV cache for 2048 tokens) or
    # the 22 MiB embedder, not both; by their files alone both would fit.
    env = {**daemon_env, "ASSISTANT_MODELS__MEMORY_BUDGET_MB": "150",
           "ASSISTANT_MODELS__PARALLEL": "1", "ASSISTANT_MODELS__STATE_RAM_MB": "0",
           "ASSISTANT_MODELS__PRELOAD": "[]"}
    daemon = start_daemon(env, tmp_path / "d.log")
    try:
        with daemon.http() as http:
            http.post(f"/api/models/{EMBED_MODEL}/load").raise_for_status()
            time.sleep(0.05)
            http.post(f"/api/models/{CHAT_MODEL}/load").raise_for_status()
            [chat] = http.get("/api/status").json()["models"]
        assert chat["name"] == CHAT_MODEL
        # 2048 tokens × 30 layers × 3 KV heads × (64 + 64) widths × 2 bytes
        assert chat["memory"]["kv_bytes"] == 2048 * 30 * 3 * 128 * 2
    finally:
        daemon.stop()
