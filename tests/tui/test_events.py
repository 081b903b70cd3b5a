"""What the UI makes of the events of a turn and of stored messages, exactly and fast: the app
talks to a :class:`TuiApi` that plays back fixed events and keeps the conversation the way the
daemon stores it, instead of to a daemon. The events are read as the client reads them
(:func:`assistant.wire.parse_event`). Summaries, text shown while it streams, and events,
values and roles the UI does not know.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import Markdown, Static

from assistant.config import load_settings
from assistant.tui.api import (
    ConversationDetail,
    ConversationSummary,
    ModelEntry,
    SkillEntry,
    StoredMessage,
    TuiApi,
)
from assistant.tui.app import AssistantApp
from assistant.tui.screens.chat import ChatScreen
from assistant.tui.widgets.prompt import PromptInput
from assistant.tui.widgets.transcript import SummaryView, Transcript
from assistant.wire import TURN_EVENTS, TurnEvent, parse_event
from tests.tui.conftest import wait_for

CID = "c-played"


def stored(mid: str, parent: str | None, role: str, content: str,
           status: str = "complete") -> StoredMessage:
    return StoredMessage(mid, parent, role, content, status, "chat" if role == "assistant"
                         else None, None, None, 0, 0, {})


def conversation(*messages: StoredMessage) -> ConversationDetail:
    return ConversationDetail(CID, "played back", False, False, {m.id: m for m in messages},
                              [m.id for m in messages])


class PlaybackApi(TuiApi):
    """Answers every turn with ``events``; after the turn, stores what the daemon would."""

    def __init__(self, env: dict[str, str], detail: ConversationDetail,
                 events: list[Any], summary_above: str | None = None) -> None:
        super().__init__(load_settings(environ=env))
        self.detail = detail
        self.events = events
        self.summary_above = summary_above
        self.gate = threading.Event()  # the playback stops at WAIT until it is set
        self.gate.set()
        self.lists = 0  # how many times the UI asked for the conversation list

    def connect(self, timeout: float | None = None) -> dict[str, Any]:
        return {"status": "ready"}

    def models(self) -> list[ModelEntry]:
        return [ModelEntry("smollm2-135m", "chat", True, 2048)]

    def skills(self) -> list[SkillEntry]:
        return [SkillEntry(name, f"the {name} skill")
                for name in ("chat", "qa", "summarize", "translate")]

    def conversations(self, limit: int = 200) -> list[ConversationSummary]:
        self.lists += 1
        return [ConversationSummary(CID, self.detail.title, False, False, "2024-01-01", 0)]

    def conversation(self, conversation_id: str) -> ConversationDetail:
        return self.detail

    def stream_turn(self, text: str, **fields: Any) -> Iterator[TurnEvent]:
        reply: list[str] = []
        summary: StoredMessage | None = None
        for raw in self.events:
            if raw == WAIT:
                assert self.gate.wait(30), "the test never opened the gate"
                continue
            event = played(raw)
            if event is None:
                continue
            if event["type"] == "delta":
                reply.append(event["text"])
            if event["type"] == "summary":
                summary = stored(event["message_id"], None, "summary", event["text"])
            yield event
        self._store(text, "".join(reply), summary)

    def _store(self, text: str, reply: str, summary: StoredMessage | None) -> None:
        path = self.detail.path()
        if summary is not None and self.summary_above is not None:
            at = [m.id for m in path].index(self.summary_above)
            path.insert(at, summary)
        parent = path[-1].id if path else None
        path += [stored("u-new", parent, "user", text),
                 stored("a-new", "u-new", "assistant", reply)]
        self.detail = conversation(*path)


def played(raw: object) -> TurnEvent | None:
    """``raw`` as the client gives it to the UI: sent as the daemon sends an event, read back
    as the client reads one (None: skipped)."""
    name = raw.get("type") if isinstance(raw, dict) else None
    return parse_event(str(name or "message"), json.dumps(raw), TURN_EVENTS)


@asynccontextmanager
async def playing(api: PlaybackApi, open_conversation: bool = True
                  ) -> AsyncIterator[tuple[AssistantApp, ChatScreen, Pilot[None]]]:
    app = AssistantApp(api.settings, CID if open_conversation else None, api=api)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen)
                       and app.screen.connected, what="the connection", timeout=20)
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        if open_conversation:
            await wait_for(pilot, lambda: screen.detail is not None, what="the conversation",
                           timeout=20)
        yield app, screen, pilot


async def send(pilot: Pilot[None], screen: ChatScreen, text: str) -> None:
    screen.query_one(PromptInput).text = text
    screen.query_one(PromptInput).focus()
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.turns.reply is not None, what="the turn", timeout=20)


def roles(screen: ChatScreen) -> list[str]:
    return [v.role for v in screen.query_one(Transcript).views()]


def errors(app: AssistantApp) -> list[str]:
    return [str(n.message) for n in app._notifications if n.severity == "error"]


WAIT = {"type": "wait"}  # not an event: the playback waits for the test's gate
ROUTE = {"type": "route", "method": "semantic", "skill": "chat", "score": 0.7,
         "runner_up": None, "runner_up_score": 0.0, "explanation": "", "text": "",
         "scores": {"chat": 0.7}, "message_id": "a-new", "conversation_id": CID}
DONE = {"type": "done", "status": "complete", "model": "smollm2-135m", "skill": "chat",
        "usage": {"prompt_tokens": 9, "completion_tokens": 2}, "context": None,
        "timings": {"tokens_per_s": 40.0}}
HISTORY = (stored("u1", None, "user", "first question"),
           stored("a1", "u1", "assistant", "first answer"),
           stored("u2", "a1", "user", "second question"),
           stored("a2", "u2", "assistant", "second answer"))


@pytest.mark.asyncio
async def test_stored_summaries_are_blocks_and_unknown_roles_are_left_out(
    isolated_env: dict[str, str],
) -> None:
    detail = conversation(
        stored("u1", None, "user", "first question"),
        stored("s1", "u1", "summary", "The user asked twice.", status="undone"),
        stored("x1", "s1", "tool", "a role the UI does not know"),
        stored("s2", "x1", "summary", "The user asked about lighthouses."),
        stored("u2", "s2", "user", "second question"),
        stored("a2", "u2", "assistant", "second answer"))
    async with playing(PlaybackApi(isolated_env, detail, [])) as (app, screen, pilot):
        await wait_for(pilot, lambda: len(screen.query("MessageView > .body")) == 5,
                       what="the messages")
        assert roles(screen) == ["user", "summary", "summary", "user", "assistant"]
        undone, done = screen.query(SummaryView)
        assert (undone.border_title, undone.has_class("undone")) == ("Summary (undone)", True)
        assert (done.border_title, done.has_class("undone")) == ("Summary of earlier turns",
                                                                 False)
        assert str(done.query_one(".body", Static).render()) == "The user asked about lighthouses."
        transcript = screen.query_one(Transcript)
        assert transcript.last_reply() is not None
        assert transcript.last_reply().content == "second answer"  # type: ignore[union-attr]
        assert transcript.last_user().content == "second question"  # type: ignore[union-attr]
        assert not errors(app)


@pytest.mark.asyncio
async def test_a_summary_event_shows_the_block_above_the_turns_kept(
    isolated_env: dict[str, str],
) -> None:
    events = [ROUTE, {"type": "progress", "done": 0, "total": 1,
                      "message": "summarizing earlier turns"},
              {"type": "summary", "message_id": "s-new", "text": "Two questions, answered.",
               "covers": 2, "tokens_before": 900, "tokens_after": 200, "context": 2048}, WAIT,
              {"type": "delta", "text": "third"}, {"type": "delta", "text": " answer"}, DONE]
    api = PlaybackApi(isolated_env, conversation(*HISTORY), events, summary_above="u2")
    api.gate.clear()
    async with playing(api) as (app, screen, pilot):
        await send(pilot, screen, "third question")
        await wait_for(pilot, lambda: bool(screen.query(SummaryView)), what="the summary")
        # Above the turns the model is still given verbatim: u2, a2 and the question.
        assert roles(screen) == ["user", "assistant", "summary", "user", "assistant", "user",
                                 "assistant"]
        summary = screen.query_one(SummaryView)
        assert summary.border_title == "Summary of earlier turns"
        assert summary.message_id == "s-new"
        api.gate.set()
        await wait_for(pilot, lambda: screen.turns.reply is None, what="the reply")
        await wait_for(pilot, lambda: screen.query_one(Transcript).views()[-1].message_id
                       == "a-new", what="the stored copy")
        views = screen.query_one(Transcript).views()
        assert [v.role for v in views] == roles(screen)[:7]
        # The stored copy matched what was shown: the same views were kept, not remounted.
        assert views[2] is summary
        assert views[-1].content == "third answer"
        assert not errors(app)


@pytest.mark.asyncio
async def test_unknown_events_and_odd_values_are_ignored(isolated_env: dict[str, str]) -> None:
    """The client skips them (:mod:`assistant.wire`): the UI never sees them."""
    events = [ROUTE, {"type": "a-future-event", "x": 1}, "not an object", {"no": "type"},
              {"type": "summary"}, {"type": "summary", "text": None, "covers": "many"},
              {"type": "delta", "text": None}, {"type": "delta", "text": "still fine"},
              {"type": "progress"}, WAIT, DONE]
    api = PlaybackApi(isolated_env, conversation(), events)
    api.gate.clear()
    async with playing(api, open_conversation=False) as (app, screen, pilot):
        await send(pilot, screen, "hello")
        view = screen.turns.reply
        assert view is not None
        api.gate.set()
        await wait_for(pilot, lambda: screen.turns.reply is None, what="the reply")
        assert view.content == "still fine"
        assert view.status == "complete"
        assert not errors(app)
        assert app.is_running


@pytest.mark.asyncio
async def test_text_shows_while_the_reply_streams_and_is_markdown_when_done(
    isolated_env: dict[str, str],
) -> None:
    events = [ROUTE, {"type": "delta", "text": "Some **bold**"}, WAIT,
              {"type": "delta", "text": " text."}, DONE]
    api = PlaybackApi(isolated_env, conversation(), events)
    api.gate.clear()
    async with playing(api, open_conversation=False) as (_app, screen, pilot):
        await send(pilot, screen, "hello")
        view = screen.turns.reply
        assert view is not None
        # Within a few frames, as plain text: no Markdown is parsed while the reply streams.
        await wait_for(pilot, lambda: view.content == "Some **bold**", timeout=2,
                       what="the first text")
        assert not view.query(Markdown)
        assert "Some **bold**" in str(view.query_one(".body", Static).render())
        api.gate.set()
        await wait_for(pilot, lambda: screen.turns.reply is None, what="the reply")
        assert view.content == "Some **bold** text."
        assert len(view.query(Markdown)) == 1


@pytest.mark.asyncio
async def test_opening_a_conversation_while_a_reply_streams_stops_it_cleanly(
    isolated_env: dict[str, str],
) -> None:
    from assistant.tui.messages import ConversationChosen

    events = [ROUTE, {"type": "delta", "text": "partial"}, WAIT,
              {"type": "delta", "text": " more"}, DONE]
    api = PlaybackApi(isolated_env, conversation(*HISTORY), events)
    api.gate.clear()
    async with playing(api) as (app, screen, pilot):
        await send(pilot, screen, "third question")
        view = screen.turns.reply
        assert view is not None
        await wait_for(pilot, lambda: view.content == "partial", timeout=5, what="the text")
        screen.post_message(ConversationChosen(CID))
        await wait_for(pilot, lambda: not view.is_attached, what="the stored copy shown")
        api.gate.set()
        await wait_for(pilot, lambda: screen.turns.reply is None, what="the turn to end")
        await pilot.pause(0.3)
        assert roles(screen) == ["user", "assistant", "user", "assistant"]
        assert not errors(app)
        assert app.is_running


@pytest.mark.asyncio
async def test_route_and_done_events_with_odd_values_are_skipped_and_the_bar_goes_on(
    isolated_env: dict[str, str],
) -> None:
    from assistant.tui.widgets.status import StatusBar

    events = [{**ROUTE, "skill": None, "method": 3, "score": "high", "message_id": 7},
              {"type": "delta", "text": "ok"},
              {**DONE, "status": None, "usage": {"prompt_tokens": "many",
                                                 "completion_tokens": 2}, "timings": "fast"}]
    api = PlaybackApi(isolated_env, conversation(), events)
    async with playing(api, open_conversation=False) as (app, screen, pilot):
        screen.query_one(PromptInput).text = "hello"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.turns.reply is None and screen.turns.started == 1,
                       what="the reply")
        status = screen.query_one(StatusBar).status
        assert (status.skill, status.method, status.score) == ("", "", None)
        assert (status.tokens_per_s, status.context_used) == (None, 0)
        assert screen.query_one(Transcript).last_reply().content == "ok"  # type: ignore[union-attr]
        # Well-formed events of a turn not stored (no conversation to load afterwards).
        unstored = {k: v for k, v in ROUTE.items() if not k.endswith("_id")}
        api.events = [unstored, {"type": "delta", "text": "fine"}, DONE]
        screen.query_one(PromptInput).text = "again"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.turns.reply is None and screen.turns.started == 2,
                       what="the second reply")
        status = screen.query_one(StatusBar).status
        assert (status.skill, status.method, status.score) == ("chat", "semantic", 0.7)
        assert (status.tokens_per_s, status.context_used) == (40.0, 11)
        assert not errors(app)


@pytest.mark.asyncio
async def test_the_status_bar_shows_the_context_the_daemon_says(
    isolated_env: dict[str, str],
) -> None:
    """The model list's context at the start, a done event's after its turn, the load answer's
    after a model switch, and no size when the daemon cannot tell; never one the UI worked out
    from its own settings (models.context_length 1000 here)."""
    from assistant.tui.widgets.status import StatusBar

    class ContextApi(PlaybackApi):
        def load_model(self, name: str) -> dict[str, Any]:
            return {"name": name, "kind": "chat", "info": {"n_ctx": 16384}, "context": 3072}

    env = {**isolated_env, "ASSISTANT_MODELS__CONTEXT_LENGTH": "1000"}
    api = ContextApi(env, conversation(), [ROUTE, {"type": "delta", "text": "hi"},
                                           {**DONE, "context": 8192}])
    async with playing(api, open_conversation=False) as (app, screen, pilot):
        bar = screen.query_one(StatusBar)
        assert bar.status.context_size == 2048  # the model list's
        assert bar.render_status().endswith("ctx 0/2048")
        screen.query_one(PromptInput).text = "hello"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.turns.reply is None and screen.turns.started == 1,
                       what="the reply")
        assert bar.status.context_size == 8192
        assert bar.render_status().endswith("/8192")
        api.events = [ROUTE, {"type": "delta", "text": "hi"}, DONE]  # a context it cannot tell
        screen.query_one(PromptInput).text = "again"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.turns.reply is None and screen.turns.started == 2,
                       what="the second reply")
        assert bar.status.context_size is None
        assert "/" not in bar.render_status().partition("ctx")[2]
        screen.action_switch_model("smollm2-135m")
        await wait_for(pilot, lambda: app.screen is screen and bar.status.context_size is not None,
                       what="the model to load")
        assert bar.status.context_size == 3072
        assert bar.render_status().endswith("/3072")
        assert not errors(app)


@pytest.mark.asyncio
async def test_a_turn_asks_for_the_conversation_list_once(isolated_env: dict[str, str]) -> None:
    """When a turn ends the list is asked for once (a new conversation, another order); showing
    the stored copy of the conversation does not ask again."""
    api = PlaybackApi(isolated_env, conversation(*HISTORY),
                      [ROUTE, {"type": "delta", "text": "third answer"}, WAIT, DONE])
    api.gate.clear()
    async with playing(api) as (app, screen, pilot):
        await wait_for(pilot, lambda: api.lists >= 1, what="the first list")
        await pilot.pause(0.3)
        before = api.lists
        await send(pilot, screen, "third question")
        api.gate.set()
        await wait_for(pilot, lambda: screen.turns.reply is None, what="the reply")
        await wait_for(pilot, lambda: screen.query_one(Transcript).views()[-1].message_id
                       == "a-new", what="the stored copy")
        await pilot.pause(0.3)
        assert api.lists - before == 1
        assert not errors(app)


@pytest.mark.asyncio
async def test_a_skill_description_is_shown_as_text_not_markup(
    isolated_env: dict[str, str],
) -> None:
    from assistant.tui.widgets.prompt import Completions

    class BracketsApi(PlaybackApi):
        def skills(self) -> list[SkillEntry]:
            return [SkillEntry("translate", "[fr] to [en], [bold]word for word[/bold]")]

    api = BracketsApi(isolated_env, conversation(), [])
    async with playing(api, open_conversation=False) as (app, screen, pilot):
        screen.query_one(PromptInput).focus()
        await pilot.press("slash", "t", "r")
        box = screen.query_one(Completions)
        assert box.display and box.option_count == 1
        prompt = box.get_option_at_index(0).prompt
        # What the list shows: a str prompt is read as markup, Content is shown as it is.
        shown = prompt if isinstance(prompt, Content) else Content.from_markup(str(prompt))
        assert shown.plain == "/translate  [fr] to [en], [bold]word for word[/bold]"
        assert not errors(app)
