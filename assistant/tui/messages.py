"""Messages the UI's workers and widgets post: small dataclasses named in the past tense."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from assistant.tui.api import ConversationDetail, ConversationSummary, StoredMessage


@dataclass
class DaemonConnected(Message):
    health: dict[str, Any]
    context_sizes: dict[str, int | None]  # model -> the daemon's context; None: unknown


@dataclass
class DaemonFailed(Message):
    message: str
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
class PromptSubmitted(Message):
    text: str


@dataclass
class TurnRouted(Message):
    turn: int
    event: dict[str, Any]


@dataclass
class TurnSummarized(Message):
    """The daemon folded older turns into a summary before replying (a ``summary`` event)."""

    turn: int
    event: dict[str, Any]


@dataclass
class TurnProgressed(Message):
    turn: int
    event: dict[str, Any]


@dataclass
class TurnFinished(Message):
    turn: int
    event: dict[str, Any]


@dataclass
class TurnFailed(Message):
    turn: int
    message: str
    hint: str | None = None


@dataclass
class TurnEnded(Message):
    """The worker of a turn stopped, whatever the reason; always the last message of a turn."""

    turn: int


@dataclass
class DocumentsAdded(Message):
    """``POST /api/documents`` ended: its ``document`` events, one per file, in order."""

    outcomes: list[dict[str, Any]]


@dataclass
class SummaryToggled(Message):
    """A compaction summary was undone or put back in force; ``message`` is the stored one."""

    conversation_id: str
    message: StoredMessage
