"""The turn stream on its own, on a bare screen with a transcript: its worker reports the events
of turn ``started`` by message, shows the reply text, and stopping it closes the stream (which
closes the connection: the daemon cancels the turn). No daemon; tests/tui drive the whole UI.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Static

from assistant.tui.messages import TurnEnded, TurnFinished, TurnRouted
from assistant.tui.screens.chat.turn_stream import TurnStream
from assistant.tui.widgets.transcript import MessageView, Transcript
from tests.tui.conftest import wait_for


class _Host(Screen[None]):
    def __init__(self) -> None:
        super().__init__()
        self.turns = TurnStream(self)
        self.routed: list[int] = []
        self.ended: list[int] = []

    def compose(self) -> ComposeResult:
        yield Transcript()

    def on_turn_routed(self, message: TurnRouted) -> None:
        self.routed.append(message.number)

    async def on_turn_ended(self, message: TurnEnded) -> None:
        await self.turns.end(message.number)
        self.ended.append(message.number)


class _HostApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.host = _Host()

    def on_mount(self) -> None:
        self.push_screen(self.host)


@pytest.mark.asyncio
async def test_stopping_a_turn_closes_its_stream_and_shows_no_more_text() -> None:
    gate, closed = threading.Event(), threading.Event()
    asked: list[dict[str, Any]] = []

    def open_stream(**fields: Any) -> Iterator[dict[str, Any]]:
        asked.append(fields)
        try:
            yield {"type": "route", "skill": "chat"}
            yield {"type": "delta", "text": "first words"}
            gate.wait(10)
            yield {"type": "delta", "text": " never shown"}
            yield {"type": "done", "status": "complete"}
        finally:
            closed.set()

    app = _HostApp()
    async with app.run_test() as pilot:
        host = app.host
        reply = await host.query_one(Transcript).add(MessageView("assistant", status="streaming"))
        host.turns.start(None, reply, open_stream, {"conversation_id": "c1"})
        assert host.turns.started == 1 and host.turns.reply_to(1) is reply
        await wait_for(pilot, lambda: reply.content == "first words", timeout=5,
                       what="the text, a frame later")
        assert host.routed == [1] and asked == [{"conversation_id": "c1"}]
        assert host.turns.cancel() is reply
        assert host.turns.cancelled and reply.status == "cancelled"
        gate.set()
        await wait_for(pilot, lambda: host.ended == [1], timeout=5, what="the end of the turn")
        assert closed.is_set()
        assert reply.content == "first words"
        assert not host.turns.running and host.turns.reply_to(1) is None
        assert host.turns.cancel() is None  # nothing left to stop


class _FinishingHost(_Host):
    def on_turn_finished(self, message: TurnFinished) -> None:
        self.turns.finished(message.number, message.event, message.citations)


class _FinishingApp(_HostApp):
    def __init__(self) -> None:
        super().__init__()
        self.host = _FinishingHost()


@pytest.mark.asyncio
async def test_the_done_events_confidence_shows_under_the_reply_and_a_low_one_warns() -> None:
    def open_stream(**fields: Any) -> Iterator[dict[str, Any]]:
        yield {"type": "route", "skill": "chat"}
        yield {"type": "delta", "text": "maybe"}
        yield {"type": "done", "status": "complete", "confidence": 0.12}

    app = _FinishingApp()
    async with app.run_test() as pilot:
        host = app.host
        reply = await host.query_one(Transcript).add(MessageView("assistant", status="streaming"))
        sure = reply.query_one(".sureness", Static)
        assert not sure.display  # no figure yet
        host.turns.start(None, reply, open_stream, {})
        await wait_for(pilot, lambda: host.ended == [1], timeout=5, what="the end of the turn")
        assert sure.display and sure.has_class("low")
        assert str(sure.render()) == "low confidence · 12 % sure"
        reply.set_footer(confidence=0.9)
        assert not sure.has_class("low") and str(sure.render()) == "90 % sure"


@pytest.mark.asyncio
async def test_the_supporting_sentences_of_the_citations_show_as_the_turn_ends() -> None:
    def open_stream(**fields: Any) -> Iterator[dict[str, Any]]:
        yield {"type": "route", "skill": "qa"}
        yield {"type": "delta", "text": "Anna Berg [1]"}
        yield {"type": "citation", "number": 1, "source": "team.md, Team, line 3",
               "support": "Anna Berg is the lead engineer.", "span": [40, 71]}
        yield {"type": "done", "status": "complete", "confidence": 0.8}

    app = _FinishingApp()
    async with app.run_test() as pilot:
        host = app.host
        reply = await host.query_one(Transcript).add(MessageView("assistant", status="streaming"))
        support = reply.query_one(".support", Static)
        assert not support.display
        host.turns.start(None, reply, open_stream, {})
        await wait_for(pilot, lambda: host.ended == [1], timeout=5, what="the end of the turn")
        assert support.display
        assert str(support.render()) == "[1] \u201cAnna Berg is the lead engineer.\u201d"
