"""How the main screens look at 80×24, from seeded history only (no live model text).

Update after an intended change of looks: ``pytest tests/tui/test_snapshots.py
--snapshot-update``, then look at the SVGs in ``__snapshots__``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from assistant.tui.app import AssistantApp
from assistant.tui.screens.chat import ChatScreen
from assistant.tui.widgets.prompt import PromptInput
from assistant.tui.widgets.sidebar import ConversationList
from assistant.tui.widgets.transcript import SummaryView, Transcript
from tests.tui.conftest import TuiDaemon, import_conversation, message, wait_for

pytestmark = pytest.mark.integration

SIZE = (80, 24)


def ready(conversation: bool = False,
          then: Callable[[Pilot[None]], Awaitable[None]] | None = None
          ) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen)
                       and app.screen.connected
                       and app.screen.query_one(ConversationList).option_count >= 3,
                       what="the connected chat screen")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.query_one(PromptInput).cursor_blink = False
        if conversation:
            await wait_for(pilot, lambda: screen.detail is not None
                           and bool(screen.query_one(Transcript).views()), what="messages")
        if then is not None:
            await then(pilot)
        await pilot.pause(0.3)
        await pilot.wait_for_scheduled_animations()

    return run_before


def app_for(tui_daemon: TuiDaemon, conversation: str | None = None) -> AssistantApp:
    return AssistantApp(tui_daemon.settings(), conversation, max_tokens=8)


def test_empty_chat_screen(tui_daemon: TuiDaemon, snap_compare: Any) -> None:
    assert snap_compare(app_for(tui_daemon), terminal_size=SIZE, run_before=ready())


def test_conversation_with_a_code_block(tui_daemon: TuiDaemon, snap_compare: Any) -> None:
    assert snap_compare(app_for(tui_daemon, "c0rust"), terminal_size=SIZE,
                        run_before=ready(conversation=True))


def test_help_screen(tui_daemon: TuiDaemon, snap_compare: Any) -> None:
    assert snap_compare(app_for(tui_daemon), terminal_size=SIZE, press=["f1"],
                        run_before=ready())


def test_search_screen_with_results(tui_daemon: TuiDaemon, snap_compare: Any) -> None:
    async def search(pilot: Pilot[None]) -> None:
        from assistant.tui.screens.search import SearchScreen

        await pilot.press("ctrl+f", *"blue")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SearchScreen)
                       and len(pilot.app.screen.results) == 2, what="two hits")
        pilot.app.screen.query_one(Input).cursor_blink = False

    assert snap_compare(app_for(tui_daemon), terminal_size=SIZE, run_before=ready(then=search))


def test_route_screen(tui_daemon: TuiDaemon, snap_compare: Any) -> None:
    async def route(pilot: Pilot[None]) -> None:
        await pilot.press("ctrl+r")

    assert snap_compare(app_for(tui_daemon, "c2plan"), terminal_size=SIZE,
                        run_before=ready(conversation=True, then=route))


def test_conversation_with_summaries(tui_daemon: TuiDaemon, snap_compare: Any) -> None:
    """A compaction summary in force and an undone one: dim blocks, not messages of anyone's.
    Imported here, after the other snapshots, so their sidebars stay as they are."""
    undone = message("m3s1", "m3u1", "summary", "The user asked how tides work.", 31)
    summary = message("m3s2", "m3s1", "summary",
                      "The user asked how tides work and why there are two a day; the "
                      "assistant explained the moon's pull and the bulge opposite it.", 32)
    import_conversation(tui_daemon, "c3tide", "Tides", [
        message("m3u1", None, "user", "How do tides work?", 30),
        {**undone, "status": "undone"}, summary,
        message("m3u2", "m3s2", "user", "And spring tides?", 33),
        message("m3a2", "m3u2", "assistant", "When the sun and moon line up.", 34, "chat"),
    ], "m3a2", 4)

    async def summaries(pilot: Pilot[None]) -> None:
        await wait_for(pilot, lambda: len(pilot.app.screen.query(SummaryView)) == 2,
                       what="two summaries")

    assert snap_compare(app_for(tui_daemon, "c3tide"), terminal_size=SIZE,
                        run_before=ready(conversation=True, then=summaries))


def test_replies_with_their_confidence_and_supporting_sentences(
        tui_daemon: TuiDaemon, snap_compare: Any) -> None:
    """Under a qa reply, the sentence its source supports it with, quoted and dim, and how sure
    the model was, dim; under a low figure, the warning. Imported after the other snapshots."""
    sure = {**message("m4a1", "m4u1", "assistant", "Anna Berg [1]\n\nSources:\n[1] team.md, "
                      "line 3", 41, "qa"), "confidence": 0.86, "citations": [
        {"number": 1, "source": "team.md, line 3", "support": "The lead engineer is Anna Berg, "
         "who joined from Oslo.", "span": [52, 105]}]}
    unsure = {**message("m4a2", "m4u2", "assistant", "In 2019, probably.", 43, "chat"),
              "confidence": 0.21}
    import_conversation(tui_daemon, "c4team", "The team", [
        message("m4u1", None, "user", "Who is the lead engineer?", 40), sure,
        message("m4u2", "m4a1", "user", "When did she join?", 42), unsure,
    ], "m4a2", 5)

    async def footers(pilot: Pilot[None]) -> None:
        await wait_for(pilot, lambda: len(pilot.app.screen.query(".sureness.low")) == 1,
                       what="a low-confidence reply")

    assert snap_compare(app_for(tui_daemon, "c4team"), terminal_size=SIZE,
                        run_before=ready(conversation=True, then=footers))
