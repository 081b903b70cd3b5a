"""The second layer of the chat screen: turns. A turn's worker thread reads the daemon's
events and reports them by message; route, summary, progress, done and error each have a
handler, and an event type the UI does not know is ignored.

Reply text is the exception: the worker adds it to a buffer that a timer moves to the screen
every ``FRAME_S``, so the UI wakes a few times a second while a reply streams, not once per
token. The model decodes on the same cores, and every cycle the UI spends is taken from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from textual import work
from textual.timer import Timer

from assistant.errors import AssistantError
from assistant.tui.api import TuiApi, Unsupported, context_size
from assistant.tui.messages import (
    TurnEnded,
    TurnFailed,
    TurnFinished,
    TurnProgressed,
    TurnRouted,
    TurnSummarized,
)
from assistant.tui.screens.chat.conversation import ConversationScreen
from assistant.tui.widgets.prompt import PromptInput, slash_commands
from assistant.tui.widgets.status import StatusBar
from assistant.tui.widgets.transcript import MessageView, SummaryView, Transcript

FRAME_S = 0.2


class PendingText:
    """Reply text the turn's worker has read and the screen has not shown yet."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self._parts.append(text)

    def take(self) -> str:
        with self._lock:
            text = "".join(self._parts)
            self._parts.clear()
        return text


def _number(value: object) -> float | None:
    """A number an event carries, or None: a malformed value must not break the status bar."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


class TurnScreen(ConversationScreen):
    """Sends turns and streams their replies into the transcript; one turn at a time."""

    def __init__(self, api: TuiApi, conversation_id: str | None = None) -> None:
        super().__init__(api, conversation_id)
        self.turn = 0
        self.streaming: MessageView | None = None
        self.asked: MessageView | None = None  # the user message the streaming reply answers
        self.cancel_event = threading.Event()
        self.pending = PendingText()
        self._frames: Timer | None = None

    async def _start_turn(self, text: str | None,
                          open_stream: Callable[..., Iterator[dict[str, Any]]]) -> None:
        transcript = self.query_one(Transcript)
        if text is not None:
            self.asked = await transcript.add(MessageView("user", text))
        else:
            self.asked = transcript.last_user()
        self.streaming = await transcript.add(MessageView("assistant", status="streaming"))
        self.turn += 1
        self.cancel_event = threading.Event()
        self.pending = PendingText()
        if self._frames is not None:
            self._frames.stop()
        self._frames = self.set_interval(FRAME_S, self._show_pending)
        self.query_one(StatusBar).set(state="generating…")
        fields: dict[str, Any] = {"conversation_id": self.conversation_id, "model": self.model}
        if self.assistant_app.max_tokens:
            fields["max_tokens"] = self.assistant_app.max_tokens
        self.run_turn(self.turn, open_stream, fields, self.cancel_event, self.pending)

    @work(thread=True, group="turn")
    def run_turn(self, turn: int, open_stream: Callable[..., Iterator[dict[str, Any]]],
                 fields: dict[str, Any], cancel: threading.Event,
                 pending: PendingText) -> None:
        try:
            events = open_stream(**fields)
            try:
                for event in events:
                    if cancel.is_set():
                        break
                    kind = event.get("type") if isinstance(event, dict) else None
                    if kind == "delta":
                        pending.add(str(event.get("text") or ""))
                    elif kind == "route":
                        self.post_message(TurnRouted(turn, event))
                    elif kind == "summary":
                        self.post_message(TurnSummarized(turn, event))
                    elif kind in {"progress", "notice"}:
                        self.post_message(TurnProgressed(turn, event))
                    elif kind == "done":
                        self.post_message(TurnFinished(turn, event))
                    elif kind == "error":
                        self.post_message(TurnFailed(turn, str(event.get("message"))))
            finally:
                # Closing the stream closes the connection: the daemon cancels the turn.
                close = getattr(events, "close", None)
                if close is not None:
                    close()
        except Unsupported as exc:
            self.post_message(TurnFailed(turn, exc.message, exc.hint))
        except AssistantError as exc:
            self.post_message(TurnFailed(turn, exc.message, exc.hint))
        except Exception as exc:  # the connection itself: httpx errors, a daemon gone
            self.post_message(TurnFailed(turn, f"lost the daemon: {exc}"))
        finally:
            self.post_message(TurnEnded(turn))

    def _current(self, turn: int) -> MessageView | None:
        return self.streaming if turn == self.turn else None

    def _show_pending(self) -> None:
        text = self.pending.take()
        if text and self.streaming is not None and not self.cancel_event.is_set():
            self.streaming.append(text)

    def on_turn_routed(self, message: TurnRouted) -> None:
        view = self._current(message.turn)
        if view is None:
            return
        event = message.event
        self.last_route = event
        scores = event.get("scores")
        skill = str(event.get("skill") or "")
        for name in [*(map(str, scores) if isinstance(scores, dict) else []), skill]:
            if name and name not in self.skills:
                self.skills.append(name)
        self.query_one(PromptInput).commands = slash_commands(self.skills)
        view.message_id = _text(event.get("message_id"))
        view.set_header(skill=skill or None)
        self.query_one(StatusBar).set(skill=skill, method=str(event.get("method") or ""),
                                      score=_number(event.get("score")))
        # A new conversation joins the sidebar when the turn ends: asking the daemon for the
        # list now would take CPU from the reply being decoded.
        new = _text(event.get("conversation_id"))
        if new and new != self.conversation_id:
            self.conversation_id = new

    async def on_turn_summarized(self, message: TurnSummarized) -> None:
        if self._current(message.turn) is None:
            return
        event = message.event
        view = SummaryView(str(event.get("text") or ""),
                           message_id=_text(event.get("message_id")))
        # The summary stands for the first ``covers`` messages of the path and goes above the
        # rest; without a usable count, above the question. The store's copy, loaded when the
        # turn ends, puts it right in any case.
        transcript = self.query_one(Transcript)
        views = transcript.views()
        covers = event.get("covers")
        before = self.asked
        if isinstance(covers, int) and 0 <= covers < len(views) - 1:
            before = views[covers]
        await transcript.add(view, before=before)

    def on_turn_progressed(self, message: TurnProgressed) -> None:
        event = message.event
        if event.get("type") == "notice":
            self.app.notify(str(event.get("message")), severity="warning", markup=False)
            return
        done, total = event.get("done"), event.get("total")
        amount = f" {done}/{total}" if total else ""
        self.query_one(StatusBar).set(state=f"{event.get('message', 'working')}{amount}")

    async def on_turn_finished(self, message: TurnFinished) -> None:
        view = self._current(message.turn)
        if view is None:
            return
        self._show_pending()
        event = message.event
        usage, timings = event.get("usage"), event.get("timings")
        usage = usage if isinstance(usage, dict) else {}
        timings = timings if isinstance(timings, dict) else {}
        status = str(event.get("status") or "complete")
        view.set_header(status=status)
        if status == "cancelled" and not self.cancel_event.is_set():
            self.app.notify("The daemon stopped the reply before it was complete "
                            "(it took longer than plugins.skill_timeout?).",
                            title="reply cancelled", severity="warning", timeout=8)
        used = [_number(usage.get(k)) or 0.0 for k in ("prompt_tokens", "completion_tokens")]
        self.query_one(StatusBar).set(tokens_per_s=_number(timings.get("tokens_per_s")),
                                      context_used=int(sum(used)),
                                      context_size=context_size(event.get("context")))

    async def on_turn_failed(self, message: TurnFailed) -> None:
        view = self._current(message.turn)
        if view is not None:
            view.set_header(status="error")
        self.notify_error(message.message, message.hint, title="reply failed")

    async def on_turn_ended(self, message: TurnEnded) -> None:
        view = self._current(message.turn)
        if view is None:
            return
        self._show_pending()
        if self._frames is not None:
            self._frames.stop()
            self._frames = None
        await view.finish()
        self.streaming = None
        self.asked = None
        self.query_one(StatusBar).set(state="ready")
        self.refresh_conversations()
        if self.conversation_id is not None:
            # The store's copy has ids, branches and the final status.
            self.load_conversation(self.conversation_id)

    def action_cancel(self) -> None:
        if self.streaming is None:
            return
        self.cancel_event.set()
        self.streaming.set_header(status="cancelled")
        self.app.notify("Stopped the reply.", timeout=2)

    # -- turns again: regenerate, re-route, edit into a branch ---------------------------------

    def action_route(self) -> None:
        if self.last_route is None:
            self.app.notify("No turn yet: the route of the last turn shows here.",
                            severity="warning")
            return
        from assistant.tui.screens.route import RouteScreen

        skills = sorted(set(self.skills) | set(self.last_route.get("scores") or {})
                        | {"chat", "translate", "summarize", "qa"})

        def done(skill: str | None) -> None:
            if skill:
                self.call_later(self.reroute, skill)

        self.app.push_screen(RouteScreen(self.last_route, skills), done)

    async def reroute(self, skill: str) -> None:
        """Answer the last turn again with ``skill``; the daemon records the correction."""
        await self._regenerate(skill)

    async def action_regenerate(self) -> None:
        await self._regenerate(None)

    async def _regenerate(self, skill: str | None) -> None:
        reply = self.query_one(Transcript).last_reply()
        mine = self.query_one(Transcript).last_user()
        if reply is None or reply.message_id is None or mine is None:
            self.app.notify("No reply to regenerate yet.", severity="warning")
            return
        if self.streaming is not None:
            self.app.notify("A reply is still being written; Esc stops it.", severity="warning")
            return
        message_id, text = reply.message_id, mine.content

        def open_stream(**fields: Any) -> Iterator[dict[str, Any]]:
            if skill is None:
                return self.api.stream_regenerate(message_id, text, **fields)
            # Through the reroute endpoint, as `assistant reroute` does, so that the router
            # learns from it; the daemon answers in the reply's conversation, with its model.
            return self.api.stream_reroute(message_id, skill,
                                           max_tokens=fields.get("max_tokens"))

        await reply.remove()
        await self._start_turn(None, open_stream)

    def action_edit_last(self) -> None:
        mine = self.query_one(Transcript).last_user()
        if mine is None or mine.message_id is None:
            self.app.notify("No message of yours to edit yet.", severity="warning")
            return
        from assistant.tui.screens.dialogs import AskScreen

        message_id = mine.message_id

        def done(text: str | None) -> None:
            if text:
                self.call_later(self._start_turn, text,
                                lambda **f: self.api.stream_edit(message_id, text, **f))

        self.app.push_screen(AskScreen("Edit your message (a new branch):", mine.content), done)
