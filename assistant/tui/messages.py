"""Messages the UI's workers and widgets post: small dataclasses named in the past tense.

Those made of a daemon stream's events carry them as typed in :mod:`assistant.wire`.

A turn's messages carry the turn's ``number`` (see :class:`~assistant.tui.screens.chat.
turn_stream.TurnStream`): one from a turn that is already over is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from assistant.tui.api import ConversationDetail, ConversationSummary, SkillEntry, StoredMessage
from assistant.wire import (
    CitationEvent,
    Document,
    GuardEvent,
    Notice,
    Progress,
    Route,
    Summary,
    TurnDone,
)


@dataclass
class DaemonConnected(Message):
    health: dict[str, Any]
    context_sizes: dict[str, int | None]  # model -> the daemon's context; None: unknown
    skills: list[SkillEntry]
    problems: list[str] = field(default_factory=list)  # of a degraded daemon


@dataclass
class DaemonFailed(Message):
    reason: str
    hint: str | None = None


@dataclass
class ConversationsLoaded(Message):
    conversations: list[ConversationSummary]


@dataclass
class ConversationLoaded(Message):
    detail: ConversationDetail
    focus_message_id: str | None = None


@dataclass
class ConversationChosen(Message):
    """The user picked a conversation (sidebar or search); open it, at a message if given."""

    conversation_id: str
    message_id: str | None = None


@dataclass
class ConversationEdited(Message):
    """The daemon stored a change to a conversation; ``said`` tells the user. ``closed``: the
    conversation left the list (archived, deleted), and a new one takes its place if open."""

    conversation_id: str
    said: str
    closed: bool = False


@dataclass
class PromptSubmitted(Message):
    text: str


@dataclass
class TurnRouted(Message):
    number: int
    event: Route


@dataclass
class TurnSummarized(Message):
    """The daemon folded older turns into a summary before replying (a ``summary`` event)."""

    number: int
    event: Summary


@dataclass
class TurnProgressed(Message):
    """A ``progress``, ``notice`` or ``guard`` event of a turn."""

    number: int
    event: Progress | Notice | GuardEvent


@dataclass
class TurnFinished(Message):
    """A turn's ``done`` event, with the ``citation`` events that came before it."""

    number: int
    event: TurnDone
    citations: tuple[CitationEvent, ...] = ()


@dataclass
class TurnFailed(Message):
    number: int
    reason: str
    hint: str | None = None


@dataclass
class TurnEnded(Message):
    """The worker of a turn stopped, whatever the reason; always the last message of a turn."""

    number: int


@dataclass
class DocumentsProgressed(Message):
    """A ``progress`` event of ``POST /api/documents``."""

    event: Progress


@dataclass
class DocumentsAdded(Message):
    """``POST /api/documents`` ended: its ``document`` events, one per file, in order."""

    outcomes: list[Document]


@dataclass
class SummaryToggled(Message):
    """A compaction summary was undone or put back in force; ``summary`` is the stored one."""

    conversation_id: str
    summary: StoredMessage
