"""The real daemon, started as users start it, on a temp socket with the real smollm2-135m.

Starting and talking to it is :mod:`assistant.testing`'s, the same code plugin authors use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.testing import RunningDaemon
from assistant.testing import start_daemon as _start_daemon
from tests.conftest import TEST_MODELS_DIR

__all__ = ["CHAT_MODEL", "EMBED_MODEL", "RunningDaemon", "start_daemon"]

CHAT_MODEL = "smollm2-135m"
EMBED_MODEL = "minilm-l6"


def require_models() -> None:
    needed = ["SmolLM2-135M-Instruct.Q4_1.gguf", "all-MiniLM-L6-v2.int8.onnx"]
    missing = [n for n in needed if not (TEST_MODELS_DIR / n).exists()]
    if missing:
        pytest.fail(f"test models missing in {TEST_MODELS_DIR}: run `make test-models`")


def start_daemon(env: dict[str, str], log: Path, *args: str) -> RunningDaemon:
    require_models()
    return _start_daemon(env, log, *args)


@pytest.fixture
def daemon_env(isolated_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(isolated_env)
    env["ASSISTANT_DAEMON__THREADS"] = "2"
    env["ASSISTANT_MODELS__CONTEXT_LENGTH"] = "2048"
    return env


@pytest.fixture
def daemon(daemon_env: dict[str, str], tmp_path: Path) -> Iterator[RunningDaemon]:
    running = start_daemon(daemon_env, tmp_path / "daemon.log")
    yield running
    running.stop()
