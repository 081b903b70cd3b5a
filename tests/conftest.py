"""Shared fixtures: every test gets its own data, runtime and config dirs.

Model files are shared across tests: they live in $ASSISTANT_TEST_MODELS_DIR (the Makefile sets
it; `make test-models` fills it), default ``.models`` at the repository root.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from assistant.testing import InProcessDaemon, in_process_daemon
from tests.databases import database, postgres

__all__ = ["database", "postgres"]  # fixtures of the store's tests (tests/databases.py)

REPO = Path(__file__).resolve().parent.parent
TEST_MODELS_DIR = Path(os.environ.get("ASSISTANT_TEST_MODELS_DIR", REPO / ".models"))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: Unix socket paths must stay under 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="as-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Point every location at a fresh temp dir; models at the shared test models dir."""
    for name in list(os.environ):
        if name.startswith("ASSISTANT_"):
            monkeypatch.delenv(name)
    env = {
        "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
        "ASSISTANT_RUNTIME_DIR": str(short_tmp / "run"),
        "ASSISTANT_MODELS_DIR": str(TEST_MODELS_DIR),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "ASSISTANT_MODEL": "smollm2-135m",
        # The bundled skills ship with models of their own (config/default.toml); tests run
        # them on the small test model, whatever else is in the models dir. `make quality`
        # measures the shipped choice.
        "ASSISTANT_SKILLS__TRANSLATE__MODEL": "",
        "ASSISTANT_SKILLS__SUMMARIZE__MODEL": "",
        "ASSISTANT_SKILLS__QA__MODEL": "",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest_asyncio.fixture
async def fake_daemon(
    isolated_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[InProcessDaemon]:
    """The daemon in this process (real app, store, plugins, router) on the fake model."""
    from assistant.config import load_settings

    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")
    async with in_process_daemon(load_settings()) as daemon:
        yield daemon
