"""What the terminal UI asks of the daemon, as typed calls on top of :class:`Client`.

Every method blocks; the UI calls them from worker threads only. A daemon too old to
regenerate, edit or re-route a turn (no such field in ``POST /api/turns``, no reroute
endpoint) makes those calls raise :class:`Unsupported`, which the UI shows as a notification
naming what is missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.client import Client
from assistant.config import Settings
from assistant.errors import AssistantError, DaemonError, RequestError
from assistant.wire import IngestEvent, TurnEvent


class Unsupported(AssistantError):
    """The daemon is too old for this call."""


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    title: str
    pinned: bool
    archived: bool
    updated: str
    message_count: int


@dataclass(frozen=True)
class StoredMessage:
    id: str
    parent_id: str | None
    role: str
    content: str
    status: str
    skill: str | None
    route: dict[str, Any] | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, Any]
    confidence: float | None = None  # how sure the model was, 0…1; None: no figure
    citations: tuple[dict[str, Any], ...] = ()  # number, source, support (docs/api.md)


@dataclass
class ConversationDetail:
    id: str
    title: str
    pinned: bool
    archived: bool
    messages: dict[str, StoredMessage]
    active_path: list[str] = field(default_factory=list)

    def path(self) -> list[StoredMessage]:
        return [self.messages[i] for i in self.active_path if i in self.messages]

    def siblings(self, message_id: str) -> list[StoredMessage]:
        """The alternatives of a message (itself included), oldest first: its branches."""
        parent = self.messages[message_id].parent_id
        role = self.messages[message_id].role
        return [m for m in self.messages.values() if m.parent_id == parent and m.role == role]

    def branch_positions(self) -> dict[str, tuple[int, int]]:
        """For each message of the path that has alternatives: (its place, how many)."""
        positions = {}
        for message in self.path():
            ids = [s.id for s in self.siblings(message.id)]
            if len(ids) > 1:
                positions[message.id] = (ids.index(message.id) + 1, len(ids))
        return positions


@dataclass(frozen=True)
class SearchResult:
    conversation_id: str
    conversation_title: str
    message_id: str
    role: str
    skill: str | None
    snippet: str
    rank: float


@dataclass(frozen=True)
class SkillEntry:
    name: str
    description: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str
    loaded: bool
    context: int | None  # the context the daemon runs the model with; None: it cannot tell
    # The remote engine serving it ([engines.NAME]) and that engine's state; None: local.
    engine: str | None = None
    engine_state: str | None = None


def context_size(value: object) -> int | None:
    """The ``context`` of a daemon's answer (tokens), or None when it has none: the daemon
    cannot tell what the model runs with."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _stored_message(raw: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        id=raw["id"], parent_id=raw.get("parent_id"), role=raw["role"],
        content=raw.get("content") or "", status=raw.get("status") or "complete",
        skill=raw.get("skill"), route=raw.get("route"), model=raw.get("model"),
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        timings=dict(raw.get("timings") or {}),
        confidence=fraction(raw.get("confidence")),
        citations=tuple(c for c in raw.get("citations") or () if isinstance(c, dict)),
    )


def fraction(value: object) -> float | None:
    """A confidence as the daemon sent it, or None when it is not a number from 0 to 1 (a
    malformed value costs the figure, not the message)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 1 else None


class TuiApi:
    """One daemon connection for the UI; safe to share between worker threads (httpx is)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = Client(settings)

    def close(self) -> None:
        self.client.close()

    # -- the daemon ----------------------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> dict[str, Any]:
        """Start the daemon if needed and wait until it is ready to take turns."""
        health = self.client.ensure_daemon()
        deadline = time.monotonic() + (timeout or self.settings.daemon.start_timeout)
        while health.get("status") == "starting":
            if time.monotonic() > deadline:
                raise DaemonError("the daemon is still starting after "
                                  f"{self.settings.daemon.start_timeout:.0f} s",
                                  "See `assistant daemon status`.")
            time.sleep(0.1)
            health = self.client.health() or health
        return health

    def problems(self) -> list[str]:
        """What the daemon says is wrong now (``/api/status`` problems): a plugin that did not
        load, a skill its breaker disabled, a plugin that blocked the daemon."""
        return [str(p) for p in self.client.get("/api/status").get("problems") or []]

    def skills(self) -> list[SkillEntry]:
        """The skills a turn can go to, third-party plugins' included (``GET /api/skills``);
        none from a daemon too old to list them."""
        try:
            rows = self.client.get("/api/skills")["skills"]
        except RequestError as exc:
            if exc.status == 404 and exc.param is None:  # no such route, not a missing thing
                return []
            raise
        return [SkillEntry(str(r["name"]), _described(r)) for r in rows]

    def models(self) -> list[ModelEntry]:
        data = self.client.get("/v1/models")["data"]
        return [ModelEntry(m["id"], str(m.get("kind") or ""), bool(m.get("loaded")),
                           context_size(m.get("context")),
                           engine=m.get("engine") if m.get("remote") else None,
                           engine_state=m.get("engine_state") if m.get("remote") else None)
                for m in data if m.get("kind") not in {"router", "embedding"}]

    def load_model(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(f"/api/models/{name}/load")
        return result

    # -- conversations -------------------------------------------------------------------------

    def conversations(self, limit: int = 200) -> list[ConversationSummary]:
        rows = self.client.get("/api/conversations", limit=limit)["conversations"]
        items = [ConversationSummary(r["id"], r["title"] or "untitled", bool(r["pinned"]),
                                     bool(r["archived"]), r["updated"],
                                     int(r.get("message_count") or 0)) for r in rows]
        # Pinned first, then most recently updated.
        items.sort(key=lambda c: c.updated, reverse=True)
        items.sort(key=lambda c: not c.pinned)
        return items

    def conversation(self, conversation_id: str) -> ConversationDetail:
        body = self.client.get(f"/api/conversations/{conversation_id}")
        messages = {m["id"]: _stored_message(m) for m in body["messages"]}
        return ConversationDetail(body["id"], body["title"] or "untitled", bool(body["pinned"]),
                                  bool(body["archived"]), messages,
                                  list(body.get("active_path") or []))

    def patch(self, conversation_id: str, **fields: Any) -> None:
        response = self.client.http.patch(f"/api/conversations/{conversation_id}", json=fields)
        _raise(response)

    def delete(self, conversation_id: str) -> None:
        _raise(self.client.http.delete(f"/api/conversations/{conversation_id}"))

    def set_summary_undone(self, message_id: str, undone: bool = True) -> StoredMessage:
        """Take a compaction summary out of the model's context (``undone``), or put it back."""
        verb = "undo" if undone else "redo"
        return _stored_message(self.client.post(f"/api/messages/{message_id}/{verb}"))

    def search(self, query: str, limit: int = 50) -> list[SearchResult]:
        hits = self.client.get("/api/search", q=query, limit=limit)["hits"]
        return [SearchResult(h["conversation_id"], h.get("conversation_title") or "untitled",
                             h["message_id"], h["role"], h.get("skill"), h["snippet"],
                             float(h.get("rank") or 0)) for h in hits]

    def export(self, conversation_id: str, fmt: str, directory: Path) -> Path:
        response = self.client.http.get(f"/api/conversations/{conversation_id}/export",
                                        params={"format": fmt})
        _raise(response)
        path = directory / f"conversation-{conversation_id[:12]}.{fmt}"
        path.write_bytes(response.content)
        return path

    # -- turns ---------------------------------------------------------------------------------

    def stream_turn(self, text: str, **fields: Any) -> Iterator[TurnEvent]:
        try:
            yield from self.client.stream_turn(text, **fields)
        except RequestError as exc:
            if not _no_chat_model(exc, fields):
                raise
            # A daemon older than chat_model: the chat model answers every turn, as it did.
            fields["model"] = fields.pop("chat_model")
            yield from self.client.stream_turn(text, **fields)

    def stream_regenerate(self, message_id: str, text: str,
                          **fields: Any) -> Iterator[TurnEvent]:
        """A new reply beside ``message_id`` (an assistant message), routed afresh."""
        return self._extended_turn(text, "regenerate", message_id, **fields)

    def stream_reroute(self, message_id: str, skill: str, *, max_tokens: int | None = None,
                       model: str | None = None, chat_model: str | None = None,
                       ) -> Iterator[TurnEvent]:
        """A new reply by ``skill`` beside ``message_id`` (an assistant message), in that reply's
        conversation; ``model`` answers whatever the skill, else the skill's own model, else
        ``chat_model`` (the conversation's when None). The daemon records the correction: the
        same words go to ``skill`` from now on, as after ``assistant reroute``."""
        try:
            yield from self.client.stream_reroute(message_id, skill, max_tokens=max_tokens,
                                                  model=model, chat_model=chat_model)
        except RequestError as exc:
            # An unknown message is a 404 naming its id; an unknown route names nothing.
            if exc.status == 404 and exc.param is None:
                raise Unsupported(
                    "the daemon cannot re-route a turn yet (no POST /api/messages/{id}/reroute)",
                    "This needs a newer daemon.") from None
            raise

    def stream_edit(self, message_id: str, text: str, **fields: Any) -> Iterator[TurnEvent]:
        """A new user message beside ``message_id`` with ``text``, and its reply: a branch."""
        return self._extended_turn(text, "edit", message_id, **fields)

    def _extended_turn(self, text: str, kind: str, message_id: str,
                       **fields: Any) -> Iterator[TurnEvent]:
        try:
            yield from self.stream_turn(text, **{kind: message_id}, **fields)
        except RequestError as exc:
            if exc.code in {"invalid_request", "extra_forbidden"} and kind in exc.message:
                raise Unsupported(
                    f"the daemon cannot {kind} a turn yet (POST /api/turns has no '{kind}' "
                    "field)", "This needs a newer daemon.") from None
            raise

    def add_documents(self, paths: list[Path]) -> Iterator[IngestEvent]:
        """Ingestion events for ``paths``, for the qa skill: progress, document…, done."""
        yield from self.client.add_documents(paths)


def _raise(response: Any) -> None:
    from assistant.client import raise_for_error

    raise_for_error(response)


def _no_chat_model(exc: RequestError, fields: dict[str, Any]) -> bool:
    """Whether a daemon refused the turn for not knowing ``chat_model`` (an older one)."""
    return "chat_model" in fields and exc.status == 400 and exc.param == "chat_model"


def _described(row: dict[str, Any]) -> str:
    """A skill's description; one set aside by its breaker says so (turns go to chat)."""
    description = str(row.get("description") or "")
    if row.get("state") == "disabled":
        return f"(disabled: turns go to chat) {description}".strip()
    return description
