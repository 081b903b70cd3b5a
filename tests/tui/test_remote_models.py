"""The model switcher lists a remote engine's models, marked with their engine, and switches
to one without loading anything (tests/integration/test_remote_engine.py runs a real engine;
here the engine is configured with its models and nothing answers at its address)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import OptionList

from assistant.tui.app import AssistantApp
from assistant.tui.screens.chat import ChatScreen
from assistant.tui.widgets.status import StatusBar
from tests.integration.peer_engine import free_port
from tests.tui.conftest import TuiDaemon, start_tui_daemon, wait_for

REMOTE = "gpu/big-model"


@pytest.fixture(scope="module")
def engine_daemon() -> Iterator[TuiDaemon]:
    tmp = Path(tempfile.mkdtemp(prefix="as-tui-", dir="/tmp"))
    running = start_tui_daemon(tmp, {
        "ASSISTANT_ENGINES__GPU__BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "ASSISTANT_ENGINES__GPU__MODELS": '["big-model"]',
        "ASSISTANT_ENGINES__GPU__CONTEXT_LENGTH": "8192"})
    try:
        yield running
    finally:
        running.daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.asyncio
async def test_a_remote_model_is_listed_with_its_engine_and_switched_to(
        engine_daemon: TuiDaemon) -> None:
    from assistant.tui.screens.models import ModelScreen

    app = AssistantApp(engine_daemon.settings())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen)
                       and app.screen.connected, what="the daemon connection")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await pilot.press("ctrl+l")
        models = app.screen
        assert isinstance(models, ModelScreen)
        await wait_for(pilot, lambda: models.entries, what="the model list")
        entries = {e.name: e for e in models.entries}
        assert entries[REMOTE].engine == "gpu" and entries["smollm2-135m"].engine is None
        box = models.query_one(OptionList)
        names = list(entries)
        label = str(box.get_option_at_index(names.index(REMOTE)).prompt)
        # Nothing answers at its address: the engine is down (asked at the daemon's start).
        assert "remote, engine gpu" in label and "ctx 8192" in label
        box.highlighted = names.index(REMOTE)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen, what="the switch")
        status = screen.query_one(StatusBar).status
        assert (status.model, status.context_size) == (REMOTE, 8192)
        assert screen.chat_model == REMOTE
