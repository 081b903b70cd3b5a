"""The turn being answered: its worker, the reply text not shown yet, and the flag that stops it.

A turn's worker thread reads the daemon's events (:data:`assistant.wire.TurnEvent`; the client
has skipped those it cannot read) and reports them to the screen by message (route, summary,
progress, done with the citations before it, error: :mod:`assistant.tui.messages`). Reply text
is the exception: the worker adds it to a buffer that a timer moves to the screen every
``FRAME_S``, so the UI wakes a few times a second while a reply streams, not once per token. The
model decodes on the same cores, and every cycle the UI spends is taken from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer

from assistant.errors import AssistantError
from assistant.tui.api import fraction
from assistant.tui.messages import (
    TurnEnded,
    TurnFailed,
    TurnFinished,
    TurnProgressed,
    TurnRouted,
    TurnSummarized,
)
from assistant.tui.widgets.transcript import MessageView
from assistant.wire import CitationEvent, Route, TurnDone, TurnEvent

FRAME_S = 0.2

# Opens a turn's stream of events with the fields every turn has (conversation, model, ...).
OpenStream = Callable[..., Iterator[TurnEvent]]


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


class TurnStream:
    """One turn at a time, streamed into its reply view, whose header (message id, skill,
    status) it keeps.

    Turns are numbered as they start (``started`` is the latest one's number); the messages of
    a turn carry its number, and :meth:`reply_to` gives the reply view only for the latest.
    ``screen`` runs the worker and the frame timer and is sent the turn's messages.
    """

    def __init__(self, screen: Screen[None]) -> None:
        self._screen = screen
        self.started = 0
        self.reply: MessageView | None = None  # the reply being written; None between turns
        self.question: MessageView | None = None  # the user message it answers
        self._cancel = threading.Event()
        self._pending = PendingText()
        self._frames: Timer | None = None

    @property
    def running(self) -> bool:
        return self.reply is not None

    @property
    def cancelled(self) -> bool:
        """Whether the user stopped the turn (not the daemon)."""
        return self._cancel.is_set()

    def start(self, question: MessageView | None, reply: MessageView,
              open_stream: OpenStream, fields: dict[str, Any]) -> None:
        """Stream the answer to ``question`` into ``reply``, a view already in the transcript."""
        self.question, self.reply = question, reply
        self.started += 1
        self._cancel = threading.Event()
        self._pending = PendingText()
        if self._frames is not None:
            self._frames.stop()
        self._frames = self._screen.set_interval(FRAME_S, self.show_pending)
        self._screen.run_worker(
            partial(read_events, self._screen.post_message, self.started, open_stream, fields,
                    self._cancel, self._pending),
            name="turn", group="turn", thread=True)

    def reply_to(self, number: int) -> MessageView | None:
        """The reply view of turn ``number`` while it is the latest and not ended; else None."""
        return self.reply if number == self.started else None

    def routed(self, number: int, event: Route) -> bool:
        """A ``route`` event: the reply gets its message id and its skill. False when turn
        ``number`` is not the one streaming."""
        reply = self.reply_to(number)
        if reply is None:
            return False
        reply.message_id = event.get("message_id")
        reply.set_header(skill=event["skill"] or None)
        return True

    def finished(self, number: int, event: TurnDone,
                 citations: Sequence[CitationEvent] = ()) -> str | None:
        """A ``done`` event: the rest of the text, the reply's confidence and the supporting
        sentences of its ``citations`` shown, and its final status returned; None when turn
        ``number`` is not the one streaming."""
        reply = self.reply_to(number)
        if reply is None:
            return None
        self.show_pending()
        status = event["status"] or "complete"
        reply.set_header(status=status)
        reply.set_footer(confidence=fraction(event.get("confidence")),
                         citations=[dict(c) for c in citations])
        return status

    def failed(self, number: int) -> None:
        if (reply := self.reply_to(number)) is not None:
            reply.set_header(status="error")

    def show_pending(self) -> None:
        text = self._pending.take()
        if text and self.reply is not None and not self._cancel.is_set():
            self.reply.append(text)

    def cancel(self) -> MessageView | None:
        """Stop the turn: the worker closes the stream, so the daemon cancels it too."""
        if self.reply is None:
            return None
        self._cancel.set()
        self.reply.set_header(status="cancelled")
        return self.reply

    async def end(self, number: int) -> MessageView | None:
        """Turn ``number``'s worker stopped: show the rest of its text and render the reply as
        Markdown. The reply view, or None when the turn was not the one streaming."""
        reply = self.reply_to(number)
        if reply is None:
            return None
        self.show_pending()
        if self._frames is not None:
            self._frames.stop()
            self._frames = None
        await reply.finish()
        self.reply = self.question = None
        return reply


def read_events(post: Callable[[Message], object], number: int, open_stream: OpenStream,
                fields: dict[str, Any], cancel: threading.Event, pending: PendingText) -> None:
    """The worker of turn ``number``: the stream's events as messages sent with ``post``, its
    text into ``pending``; ends with :class:`TurnEnded` whatever happens."""
    citations: list[CitationEvent] = []  # shown with the done event, under the reply
    try:
        events = open_stream(**fields)
        try:
            for event in events:
                if cancel.is_set():
                    break
                if event["type"] == "delta":
                    pending.add(event["text"])
                elif event["type"] == "route":
                    post(TurnRouted(number, event))
                elif event["type"] == "summary":
                    post(TurnSummarized(number, event))
                elif event["type"] in ("progress", "notice", "guard"):
                    post(TurnProgressed(number, event))
                elif event["type"] == "citation":
                    citations.append(event)
                elif event["type"] == "done":
                    post(TurnFinished(number, event, tuple(citations)))
                elif event["type"] == "error":
                    post(TurnFailed(number, event["message"]))
        finally:
            # Closing the stream closes the connection: the daemon cancels the turn.
            close = getattr(events, "close", None)
            if close is not None:
                close()
    except AssistantError as exc:  # Unsupported too: a daemon too old for the call
        post(TurnFailed(number, exc.message, exc.hint))
    except Exception as exc:  # the connection itself: httpx errors, a daemon gone
        post(TurnFailed(number, f"lost the daemon: {exc}"))
    finally:
        post(TurnEnded(number))
