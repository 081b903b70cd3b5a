"""Shared helpers of the reliability suite: a real daemon on a short temp runtime dir."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.testing import RunningDaemon, daemon_environment, start_daemon
from tests.conftest import TEST_MODELS_DIR
from tests.integration.conftest import CHAT_MODEL, require_models


@pytest.fixture
def runtime_root() -> Iterator[Path]:
    """A fresh, short directory under /tmp (socket paths must stay under ~100 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="ar-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def real_env(tmp_path: Path, runtime_root: Path) -> dict[str, str]:
    require_models()
    return daemon_environment(tmp_path / "data", runtime_root / "run", model=CHAT_MODEL,
                              models_dir=TEST_MODELS_DIR)


@pytest.fixture
def real_daemon(real_env: dict[str, str], tmp_path: Path) -> Iterator[RunningDaemon]:
    running = start_daemon(real_env, tmp_path / "daemon.log")
    yield running
    running.stop()
