"""A skill a third-party plugin registers is offered by the UI like the bundled ones: the
completions come from the daemon's ``GET /api/skills``, not from a list in the UI.

The plugin is the example one, ``examples/assistant-shout``, found through its ``assistant``
entry point as an installed plugin would be: a dist-info naming the module goes on the daemon's
PYTHONPATH beside the module's folder (what ``pip install`` would leave, without building).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.tui.app import AssistantApp
from assistant.tui.screens.chat import ChatScreen
from assistant.tui.widgets.prompt import Completions, PromptInput
from tests.conftest import REPO
from tests.tui.conftest import TuiDaemon, start_tui_daemon, wait_for

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "assistant-shout"


def install_entry_point(site: Path) -> None:
    info = site / "assistant_shout-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: assistant-shout\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[assistant]\nshout = assistant_shout\n")


@pytest.fixture(scope="module")
def shout_daemon() -> Iterator[TuiDaemon]:
    tmp = Path(tempfile.mkdtemp(prefix="as-tui-", dir="/tmp"))
    install_entry_point(tmp / "site")
    running = start_tui_daemon(
        tmp, {"PYTHONPATH": os.pathsep.join([str(tmp / "site"), str(EXAMPLE)])})
    try:
        yield running
    finally:
        running.daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.asyncio
async def test_a_third_party_skill_is_in_slash_completion(shout_daemon: TuiDaemon) -> None:
    listed = [s["name"] for s in shout_daemon.get("/api/skills")["skills"]]
    assert "shout" in listed, listed
    app = AssistantApp(shout_daemon.settings(), max_tokens=8)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen)
                       and app.screen.connected, what="the daemon connection")
        screen = app.screen
        await pilot.press("slash", "s")
        box = screen.query_one(Completions)
        offered = [box.get_option_at_index(i) for i in range(box.option_count)]
        # The skills by name, then the commands the UI handles itself.
        assert [o.id for o in offered] == ["shout", "summarize", "search"]
        assert "Repeat the text in capitals" in str(offered[0].prompt)
        await pilot.press("h", "tab")
        assert screen.query_one(PromptInput).text == "/shout "


@pytest.mark.asyncio
async def test_a_degraded_daemons_problems_are_shown_on_connect() -> None:
    """A plugin that fails to load makes the daemon degraded: the UI says why, once, as a
    notification (the status bar says `degraded`)."""
    tmp = Path(tempfile.mkdtemp(prefix="as-tui-", dir="/tmp"))
    site = tmp / "site"
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[assistant]\nbroken = broken_plugin\n")
    (site / "broken_plugin.py").write_text("raise RuntimeError('missing table')\n")
    running = start_tui_daemon(tmp, {"PYTHONPATH": str(site)})
    try:
        app = AssistantApp(running.settings(), max_tokens=8)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen)
                           and app.screen.connected, what="the daemon connection")
            await pilot.pause(0.1)
            shown = [(n.title, str(n.message)) for n in app._notifications]
    finally:
        running.daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    [text] = [message for title, message in shown if title == "the daemon is degraded"]
    assert "plugin 'broken' failed to load" in text and "missing table" in text
