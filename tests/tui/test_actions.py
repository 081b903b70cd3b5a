"""Every action of the chat screen, driven with Pilot against the real daemon."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, OptionList

from assistant.errors import ConfigError
from assistant.tui.app import AssistantApp
from assistant.tui.keys import ACTIONS
from assistant.tui.screens.chat import ChatScreen
from assistant.tui.widgets.prompt import Completions, PromptInput
from assistant.tui.widgets.sidebar import ConversationList
from assistant.tui.widgets.status import StatusBar
from assistant.tui.widgets.transcript import MessageView, SummaryView, Transcript
from tests.tui.conftest import (
    SEED_TITLES,
    TuiDaemon,
    import_conversation,
    message,
    wait_for,
)

pytestmark = pytest.mark.integration


@asynccontextmanager
async def chat(tui_daemon: TuiDaemon, conversation: str | None = None,
               max_tokens: int = 24, **environ: str
               ) -> AsyncIterator[tuple[AssistantApp, ChatScreen, Pilot[None]]]:
    app = AssistantApp(tui_daemon.settings(**environ), conversation, max_tokens=max_tokens)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen)
                       and app.screen.connected, what="the daemon connection")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_for(pilot, lambda: screen.query_one(ConversationList).option_count >= 1,
                       what="the conversation list")
        yield app, screen, pilot


async def open_conversation(pilot: Pilot[None], screen: ChatScreen, cid: str) -> None:
    from assistant.tui.messages import ConversationChosen

    screen.post_message(ConversationChosen(cid))
    await wait_for(pilot, lambda: screen.detail is not None and screen.detail.id == cid
                   and bool(screen.query_one(Transcript).views()), what=f"conversation {cid}")


async def ask(pilot: Pilot[None], screen: ChatScreen, text: str) -> MessageView:
    prompt = screen.query_one(PromptInput)
    prompt.focus()
    prompt.text = text
    turn = screen.turns.started
    await pilot.press("enter")
    # The turn number, not the streaming view: a short reply may be over before the next look.
    await wait_for(pilot, lambda: screen.turns.started > turn, what="the reply to start")
    view = screen.turns.reply or screen.query_one(Transcript).last_reply()
    assert view is not None
    await wait_for(pilot, lambda: screen.turns.reply is None, timeout=120, what="the reply")
    return view


def notices(app: AssistantApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


@pytest.mark.asyncio
async def test_question_streams_a_reply_and_fills_the_status_bar(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon) as (_app, screen, pilot):
        reply = await ask(pilot, screen, "What is the capital of France?")
        assert reply.content.strip(), "no reply text arrived"
        assert reply.skill, "the route's skill is not in the header"
        status = screen.query_one(StatusBar).status
        assert status.model == "smollm2-135m"
        assert status.skill and status.method
        assert status.tokens_per_s is not None and status.tokens_per_s > 0
        assert status.context_size == 2048  # the done event's: the daemon's figure
        assert 0 < status.context_used <= status.context_size
        assert screen.conversation_id is not None
        # The new conversation is listed, and the store has the reply as it was shown.
        await wait_for(pilot, lambda: any(
            o.id == screen.conversation_id for o in
            screen.query_one(ConversationList)._options), what="the sidebar entry")
        stored = tui_daemon.get(f"/api/conversations/{screen.conversation_id}")
        replies = [m for m in stored["messages"] if m["role"] == "assistant"]
        assert replies[-1]["content"] == reply.content
        assert replies[-1]["status"] == "complete"


@pytest.mark.asyncio
async def test_escape_cancels_generation_on_the_daemon(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon, max_tokens=1500) as (_app, screen, pilot):
        prompt = screen.query_one(PromptInput)
        prompt.text = "Write a very long story about a dragon and a knight."
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.turns.reply is not None
                       and bool(screen.turns.reply.content), what="the first reply text")
        view = screen.turns.reply
        assert view is not None
        await pilot.press("escape")
        assert view.status == "cancelled"
        await wait_for(pilot, lambda: screen.turns.reply is None, what="the worker to stop")
        cid = screen.conversation_id

        def stored_status() -> str:
            stored = tui_daemon.get(f"/api/conversations/{cid}")
            return str([m for m in stored["messages"] if m["role"] == "assistant"][-1]["status"])

        await wait_for(pilot, lambda: stored_status() == "cancelled", timeout=30,
                       what="the daemon to store the reply as cancelled")


@pytest.mark.asyncio
async def test_slash_completion_and_input_history(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon) as (_app, screen, pilot):
        prompt = screen.query_one(PromptInput)
        await pilot.press("slash", "t", "r")
        box = screen.query_one(Completions)
        assert box.display and box.option_count == 1
        await pilot.press("tab")
        assert prompt.text == "/translate "
        assert not box.display
        # Ctrl+J starts a new line instead of sending.
        await pilot.press(*"hola", "ctrl+j", *"amigo")
        assert prompt.text == "/translate hola\namigo"
        prompt.text = ""
        prompt.sent.extend(["first question", "second question"])
        await pilot.press("up")
        assert prompt.text == "second question"
        await pilot.press("up")
        assert prompt.text == "first question"
        await pilot.press("down", "down")
        assert prompt.text == ""


@pytest.mark.asyncio
async def test_sidebar_lists_pinned_first_filters_and_opens(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon) as (_app, screen, pilot):
        box = screen.query_one(ConversationList)
        titles = [str(box.get_option_at_index(i).prompt).strip("▪ ")
                  for i in range(box.option_count)]
        assert titles[0] == SEED_TITLES[0]  # pinned, though the oldest
        await pilot.press("ctrl+t")
        assert box.has_focus
        await pilot.press("slash")
        assert screen.query_one("#filter", Input).has_focus
        await pilot.press(*"weekend")
        assert box.option_count == 1
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: screen.detail is not None
                       and screen.detail.title == SEED_TITLES[2], what="the opened conversation")
        assert [v.content for v in screen.query_one(Transcript).views()][-1] == (
            "Try the north shore loop.")


@pytest.mark.asyncio
async def test_new_rename_pin_archive_and_delete(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon) as (app, screen, pilot):
        await ask(pilot, screen, "hello")
        cid = screen.conversation_id
        assert cid is not None
        await wait_for(pilot, lambda: screen.detail is not None and screen.detail.id == cid,
                       what="the stored conversation")

        await pilot.press("f2")
        await pilot.pause()
        title = app.screen.query_one(Input)
        title.value = "Renamed by the test"
        await pilot.press("enter")
        await wait_for(pilot, lambda: tui_daemon.get(f"/api/conversations/{cid}")["title"]
                       == "Renamed by the test", what="the rename")

        await pilot.press("f4")
        await wait_for(pilot, lambda: tui_daemon.get(f"/api/conversations/{cid}")["pinned"],
                       what="the pin")

        await pilot.press("f3")
        await wait_for(pilot, lambda: tui_daemon.get(f"/api/conversations/{cid}")["archived"],
                       what="the archive")
        await wait_for(pilot, lambda: screen.conversation_id is None, what="a new conversation")
        assert cid not in [o.id for o in screen.query_one(ConversationList)._options]

        await open_conversation(pilot, screen, cid)
        await pilot.press("f8")
        await pilot.pause()
        await pilot.press("n")  # asks first; no keeps it
        await pilot.pause(0.3)
        assert tui_daemon.get(f"/api/conversations/{cid}")["id"] == cid
        await pilot.press("f8")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.conversation_id is None, what="the delete")
        ids = [c["id"] for c in tui_daemon.get("/api/conversations", archived="all")
               ["conversations"]]
        assert cid not in ids

        await pilot.press("ctrl+n")
        assert screen.conversation_id is None
        assert not screen.query_one(Transcript).views()


@pytest.mark.asyncio
async def test_search_ranks_hits_and_opens_the_conversation_at_the_message(
        tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon) as (app, screen, pilot):
        await pilot.press("ctrl+f")
        await pilot.press(*"hiking trail")
        from assistant.tui.screens.search import SearchScreen

        search = app.screen
        assert isinstance(search, SearchScreen)
        await wait_for(pilot, lambda: search.results, what="search results")
        assert search.results[0].conversation_title == SEED_TITLES[2]
        assert "<mark>" in search.results[0].snippet
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: screen.detail is not None and screen.detail.id == "c2plan",
                       what="the conversation of the hit")
        found = [v for v in screen.query_one(Transcript).views() if v.has_class("found")]
        assert [v.message_id for v in found] == ["m2w1"]


@pytest.mark.asyncio
async def test_export_markdown_and_json_to_the_current_dir(
        tui_daemon: TuiDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with chat(tui_daemon, conversation="c0rust") as (app, screen, pilot):
        await wait_for(pilot, lambda: screen.detail is not None, what="the conversation")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: list(tmp_path.glob("*.md")), what="the Markdown file")
        await pilot.press("ctrl+x")
        await wait_for(pilot, lambda: list(tmp_path.glob("*.json")), what="the JSON file")
    markdown = next(tmp_path.glob("*.md")).read_text()
    assert "# Rust ownership notes" in markdown and "fn total" in markdown
    document = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert document["conversations"][0]["id"] == "c0rust"
    assert any(str(tmp_path) in n for n in notices(app))


@pytest.mark.asyncio
async def test_copy_last_reply_and_last_code_block(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon, conversation="c0rust") as (app, screen, pilot):
        await wait_for(pilot, lambda: screen.query_one(Transcript).views(), what="messages")
        await pilot.press("ctrl+y")
        assert app.clipboard.startswith("Borrow it with a reference:")
        await pilot.press("ctrl+k")
        assert app.clipboard == "fn total(v: &Vec<i32>) -> i32 {\n    v.iter().sum()\n}"


@pytest.mark.asyncio
async def test_route_screen_explains_the_last_turn(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon, conversation="c2plan") as (app, screen, pilot):
        await wait_for(pilot, lambda: screen.last_route is not None, what="the route")
        status = screen.query_one(StatusBar).status
        assert (status.skill, status.method, status.score) == ("chat", "semantic", 0.71)
        await pilot.press("ctrl+r")
        from assistant.tui.screens.route import RouteScreen

        assert isinstance(app.screen, RouteScreen)
        text = str(app.screen.query_one("#explanation").render())
        assert "semantic" in text and "runner-up    qa" in text
        await pilot.press("escape")
        assert app.screen is screen


@pytest.mark.asyncio
async def test_reroute_answers_with_the_skill_and_records_the_correction(
        tui_daemon: TuiDaemon) -> None:
    """Enter on a skill in the route screen goes through POST /api/messages/{id}/reroute, as
    `assistant reroute` does: the new reply is the skill's, and the router has learnt it."""
    text = "Describe the old mill down by the river"
    import_conversation(tui_daemon, "c3mill", "The old mill", [
        message("m3m1", None, "user", text, 31),
        message("m3m2", "m3m1", "assistant", "It still grinds flour on Saturdays.", 32, "chat"),
    ], "m3m2", 4)
    async with chat(tui_daemon, conversation="c3mill", max_tokens=8) as (app, screen, pilot):
        await wait_for(pilot, lambda: screen.query_one(Transcript).last_reply() is not None,
                       what="the conversation")
        await pilot.press("ctrl+r")
        from assistant.tui.screens.route import RouteScreen

        route = app.screen
        assert isinstance(route, RouteScreen)
        skills = route.query_one(OptionList)
        skills.highlighted = [skills.get_option_at_index(i).id
                              for i in range(skills.option_count)].index("summarize")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.turns.reply is None and screen.turns.started == 1,
                       timeout=600, what="the re-routed turn")
        await wait_for(pilot, lambda: screen.detail is not None
                       and len(screen.detail.messages) == 3, what="the stored new reply")
        errors = [str(n.message) for n in app._notifications if n.severity == "error"]
        assert not errors, errors
        reply = screen.query_one(Transcript).last_reply()
        assert reply is not None and reply.skill == "summarize"
        assert reply.message_id not in {None, "m3m2"}
        status = screen.query_one(StatusBar).status
        assert (status.skill, status.method) == ("summarize", "correction")
        stored = tui_daemon.get(f"/api/messages/{reply.message_id}")
        assert stored["parent_id"] == "m3m1" and stored["skill"] == "summarize"
        assert stored["route"]["method"] == "correction"
        # The correction is recorded: the same words, with no skill asked for, now go to
        # summarize, and the route screen says why.
        await pilot.press("ctrl+n")
        await ask(pilot, screen, text)
        status = screen.query_one(StatusBar).status
        assert (status.skill, status.method) == ("summarize", "correction")
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RouteScreen)
        explanation = str(app.screen.query_one("#explanation").render())
        assert "you re-routed this utterance to 'summarize' before" in explanation


@pytest.mark.asyncio
async def test_regenerate_adds_a_sibling_reply(tui_daemon: TuiDaemon) -> None:
    """ctrl+g answers the last question again, beside the old reply (POST /api/turns)."""
    async with chat(tui_daemon, conversation="c2plan") as (app, screen, pilot):
        await wait_for(pilot, lambda: screen.query_one(Transcript).last_reply() is not None,
                       what="the conversation")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: screen.turns.reply is None and screen.turns.started == 1,
                       timeout=600, what="the regenerate turn")
        said = " ".join(notices(app))
        assert "Traceback" not in said and "POST /api/turns" not in said
        await wait_for(pilot, lambda: screen.detail is not None
                       and len(screen.detail.messages) > 2, what="the new reply")


@pytest.mark.asyncio
async def test_branch_switcher_switches_the_active_branch(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon, conversation="c1poem") as (app, screen, pilot):
        # The conversation is loaded a little before its messages are mounted.
        await wait_for(pilot, lambda: screen.query_one(Transcript).last_reply() is not None,
                       what="the conversation")
        reply = screen.query_one(Transcript).last_reply()
        assert reply is not None and reply.content == "The heaven is blue."
        assert reply.branches == (2, 2)
        await pilot.press("ctrl+o")
        from assistant.tui.screens.branches import BranchScreen

        assert isinstance(app.screen, BranchScreen)
        await pilot.press("home", "enter")
        await wait_for(pilot, lambda: (r := screen.query_one(Transcript).last_reply())
                       is not None and r.content == "The sky is blue.", what="the other branch")
        assert tui_daemon.get("/api/conversations/c1poem")["active_path"][-1] == "m1p2"


@pytest.mark.asyncio
async def test_switch_model_lists_and_loads(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon) as (app, screen, pilot):
        sent: list[dict[str, Any]] = []
        start = screen.turns.start

        def recording(question: Any, reply: Any, open_stream: Any, fields: dict[str, Any]
                      ) -> None:
            sent.append(dict(fields))
            start(question, reply, open_stream, fields)

        screen.turns.start = recording  # type: ignore[method-assign]
        # Not picked: the chat model answers chat and skills without a model of their own.
        await ask(pilot, screen, "Hello")
        assert sent[-1]["chat_model"] == screen.chat_model and "model" not in sent[-1]
        await pilot.press("ctrl+l")
        from assistant.tui.screens.models import ModelScreen

        models = app.screen
        assert isinstance(models, ModelScreen)
        await wait_for(pilot, lambda: models.entries, what="the model list")
        names = [e.name for e in models.entries]
        assert "smollm2-135m" in names and "minilm-l6" not in names
        box = models.query_one(OptionList)
        box.highlighted = names.index("smollm2-135m")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen, what="the model to load")
        status = screen.query_one(StatusBar).status
        assert (status.model, status.context_size) == ("smollm2-135m", 2048)  # the daemon's
        assert any("Now chatting with smollm2-135m" in n for n in notices(app))
        await ask(pilot, screen, "Hello again")  # picked: it answers every turn
        assert sent[-1]["model"] == sent[-1]["chat_model"] == "smollm2-135m"


@pytest.mark.asyncio
async def test_documents_are_added_and_failed_files_named_with_their_reason(
        tui_daemon: TuiDaemon, tmp_path: Path) -> None:
    """ctrl+d sends the files to POST /api/documents: the good one is indexed, and each file
    the daemon refuses is named in a notification with its reason."""
    good = tmp_path / "keeper notes.md"
    good.write_text("The lighthouse lamp burns oil brought by the supply boat on Tuesdays.\n")
    empty = tmp_path / "empty.md"
    empty.write_text("")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02 not text at all")
    async with chat(tui_daemon) as (app, screen, pilot):
        await pilot.press("ctrl+d")
        await pilot.pause()
        app.screen.query_one(Input).value = f"'{good}' {empty} {tmp_path}/blob.*"
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("Documents for qa" in n for n in notices(app)),
                       timeout=120, what="the documents notice")
        said = notices(app)
        assert any("keeper notes.md (1 chunk)" in n for n in said), said
        assert any(str(empty) in n and "no text" in n for n in said), said
        assert any(str(binary) in n and "binary" in n for n in said), said
        assert screen.query_one(StatusBar).status.state == "ready"
    listed = [d["path"] for d in tui_daemon.get("/api/documents")["documents"]]
    assert str(good.resolve()) in listed
    assert str(empty.resolve()) not in listed and str(binary.resolve()) not in listed


@pytest.mark.asyncio
async def test_undo_and_redo_the_summary_in_force(tui_daemon: TuiDaemon) -> None:
    """F7 takes the summary in force out of the model's context, and F7 again puts it back
    (POST /api/messages/{id}/undo, /redo). The summaries are imported (POST /api/import keeps
    their role and status): having smollm2 compact a conversation took minutes on a loaded
    machine; tests/integration/test_compaction.py covers the compaction itself."""
    async with chat(tui_daemon, conversation="c2plan") as (app, screen, pilot):
        await wait_for(pilot, lambda: screen.query_one(Transcript).views(), what="messages")
        await pilot.press("f7")
        await wait_for(pilot, lambda: any("no summary" in n for n in notices(app)),
                       what="the no-summary notice")

        earlier = message("m4s1", "m4u1", "summary", "The keeper trimmed the lamp.", 41)
        import_conversation(tui_daemon, "c4log", "Lighthouse log", [
            message("m4u1", None, "user", "What did the keeper do on Monday?", 40),
            {**earlier, "status": "undone"},
            message("m4s2", "m4s1", "summary", "The keeper trimmed the lamp on Monday and "
                    "waited for the supply boat.", 42),
            message("m4u2", "m4s2", "user", "And on Tuesday?", 43),
            message("m4a2", "m4u2", "assistant", "The boat came with oil.", 44, "chat"),
        ], "m4a2", 4)
        await open_conversation(pilot, screen, "c4log")
        transcript = screen.query_one(Transcript)

        def blocks() -> list[tuple[str | None, str, object]]:
            return [(v.message_id, v.status, v.border_title)
                    for v in transcript.query(SummaryView)]

        def stored(message_id: str) -> str:
            return str(tui_daemon.get(f"/api/messages/{message_id}")["status"])

        await wait_for(pilot, lambda: len(blocks()) == 2, what="the two summary blocks")
        in_force = ("m4s2", "complete", "Summary of earlier turns")
        undone = ("m4s2", "undone", "Summary (undone)")
        assert blocks() == [("m4s1", "undone", "Summary (undone)"), in_force]

        await pilot.press("f7")  # the summary in force: m4s2
        await wait_for(pilot, lambda: blocks()[1] == undone, what="the undone block")
        assert stored("m4s2") == "undone" and stored("m4s1") == "undone"
        assert any("Summary undone" in n for n in notices(app))

        await pilot.press("f7")  # none in force: the latest undone one comes back
        await wait_for(pilot, lambda: blocks()[1] == in_force, what="the redone block")
        assert stored("m4s2") == "complete" and stored("m4s1") == "undone"
        assert any("back in force" in n for n in notices(app))
        assert blocks()[0] == ("m4s1", "undone", "Summary (undone)")


@pytest.mark.asyncio
async def test_help_lists_every_action_with_its_configured_key(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon, ASSISTANT_TUI__KEYS__SEARCH='"ctrl+underscore"') as (
            app, _screen, pilot):
        await pilot.press("f1")
        text = str(app.screen.query_one("#keys").render())
        for action in ACTIONS:
            assert action.description in text
        assert "Ctrl+Underscore" in text and "Ctrl+F " not in text
        await pilot.press("escape")
        await pilot.press("ctrl+underscore")
        from assistant.tui.screens.search import SearchScreen

        assert isinstance(app.screen, SearchScreen)


@pytest.mark.asyncio
async def test_every_action_is_in_the_command_palette(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon) as (app, screen, pilot):
        descriptions = {c.title for c in app.get_system_commands(screen)}
        for action in ACTIONS:
            if action.id != "cancel":
                assert action.description in descriptions
        await pilot.press("ctrl+p")
        await pilot.press(*"search all")
        await pilot.pause(0.5)
        await pilot.press("enter")
        from assistant.tui.screens.search import SearchScreen

        await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen),
                       what="the search screen from the palette")


@pytest.mark.asyncio
async def test_daemon_errors_are_notifications_not_tracebacks(tui_daemon: TuiDaemon) -> None:
    async with chat(tui_daemon, ASSISTANT_MODEL="no-such-model") as (app, screen, pilot):
        prompt = screen.query_one(PromptInput)
        prompt.text = "hello"
        await pilot.press("enter")
        await wait_for(pilot, lambda: notices(app), what="the error notice")
        await wait_for(pilot, lambda: screen.turns.reply is None, what="the turn to end")
        said = " ".join(notices(app))
        assert "no-such-model" in said and "Traceback" not in said


def test_unknown_action_in_tui_keys_is_a_config_error(tui_daemon: TuiDaemon) -> None:
    settings: Any = tui_daemon.settings(ASSISTANT_TUI__KEYS__FLY='"ctrl+z"')
    with pytest.raises(ConfigError, match="fly"):
        AssistantApp(settings)
