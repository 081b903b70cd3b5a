"""What the store hands out: plain frozen dataclasses, never ORM rows.

A conversation's messages form a tree (``parent_id``): editing a user message or regenerating
a reply adds a sibling instead of overwriting. ``active_leaf_id`` picks the branch shown; the
active path runs from the root to that leaf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# A "summary" message stands, in the active path, for the turns before it: the model is given
# the summary instead of them (context compaction). Undoing it sets its status to "undone".
Role = Literal["user", "assistant", "system", "summary"]
Status = Literal["streaming", "complete", "cancelled", "error", "incomplete", "undone"]
ROLES: tuple[str, ...] = ("user", "assistant", "system", "summary")
STATUSES: tuple[str, ...] = ("streaming", "complete", "cancelled", "error", "incomplete",
                             "undone")
FINAL_STATUSES: tuple[str, ...] = ("complete", "cancelled", "error", "incomplete")


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    parent_id: str | None
    role: str
    content: str
    status: str
    created: datetime
    skill: str | None = None
    route: dict[str, Any] | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, Any] | None = None
    # How sure the model was of the reply, 0…1 (assistant.confidence); None without a figure.
    confidence: float | None = None
    # The sources a reply cites: number, source, and the supporting sentence (docs/api.md).
    citations: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class ConversationSummary:
    """One line of a listing."""

    id: str
    title: str
    created: datetime
    updated: datetime
    archived: bool
    pinned: bool
    model: str | None
    message_count: int


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    created: datetime
    updated: datetime
    archived: bool = False
    pinned: bool = False
    model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    active_leaf_id: str | None = None
    messages: tuple[Message, ...] = ()  # parents before children, siblings oldest first

    def message(self, message_id: str) -> Message | None:
        return next((m for m in self.messages if m.id == message_id), None)

    def children(self, message_id: str | None) -> list[Message]:
        return [m for m in self.messages if m.parent_id == message_id]

    def path_to(self, message_id: str | None) -> list[Message]:
        """Root → ``message_id``; empty when it is None or not in this conversation."""
        by_id = {m.id: m for m in self.messages}
        path: list[Message] = []
        current = by_id.get(message_id) if message_id else None
        while current is not None:
            path.append(current)
            current = by_id.get(current.parent_id) if current.parent_id else None
        return path[::-1]

    @property
    def active_path(self) -> list[Message]:
        return self.path_to(self.active_leaf_id)


@dataclass(frozen=True)
class Turn:
    """A user message, committed, and the assistant message that will answer it (streaming)."""

    conversation_id: str
    user_message: Message
    assistant_message: Message
    created_conversation: bool = False


@dataclass(frozen=True)
class SearchHit:
    conversation_id: str
    conversation_title: str
    message_id: str
    role: str
    skill: str | None
    created: datetime
    snippet: str
    rank: float  # bm25: lower is a better match


@dataclass(frozen=True)
class ImportResult:
    imported: tuple[str, ...]  # conversation ids added
    skipped: tuple[str, ...]  # already present, left as they were


def model_context(path: list[Message]) -> list[Message]:
    """What the model is given of ``path``: from its last summary in force on, else all of it.

    A ``summary`` message (status ``complete``) stands for everything before it; an ``undone``
    one is left out, and so are summaries above the one in force, and every turn a guard
    blocked (both its messages).
    """
    start = 0
    for i, message in enumerate(path):
        if message.role == "summary" and message.status == "complete":
            start = i
    # A turn a guard blocked is left out, the user's side too: what the guard refused must
    # not reach the model with a later turn.
    refused = {m.parent_id for m in path if m.role == "assistant" and is_blocked(m)}
    return [m for m in path[start:]
            if not (m.role == "summary" and (m.status != "complete" or m is not path[start]))
            and m.id not in refused and not (m.role == "assistant" and is_blocked(m))]


def is_blocked(message: Message) -> bool:
    """Whether ``message`` is a guard's refusal of the turn before it (docs/plugins.md)."""
    return isinstance(message.route, dict) and message.route.get("method") == "blocked"
