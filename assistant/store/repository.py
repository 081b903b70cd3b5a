"""The conversation store: the one object that opens the database and the only code that writes it.

The daemon drives a turn through :meth:`Store.begin_turn` (user message committed, assistant
message created ``streaming``), :meth:`Store.save_partial` while tokens arrive, and
:meth:`Store.finalize` once. :meth:`Store.recover` on start marks what a crash left streaming as
``incomplete``. Driver errors leave as :class:`StorageUnavailable` (disk full, read-only, busy:
try later; the connection pool is dropped so the next call starts clean) or
:class:`StorageError`; a damaged file makes the store refuse every further write.

:class:`Store` owns the connections, transactions, error handling and clock; the SQL of each
operation is in :mod:`.turns` (writing the message tree), :mod:`.conversations` (writing whole
conversations), :mod:`.queries` (reading) and :mod:`.search`, which it calls inside a
transaction of its own.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc

from assistant.config import Settings
from assistant.errors import RequestError, StorageError, StorageUnavailable
from assistant.store import db, exchange, migrations, queries, turns
from assistant.store.conversations import (
    delete_conversation,
    import_conversations,
    set_conversation_fields,
)
from assistant.store.queries import not_found
from assistant.store.records import (
    FINAL_STATUSES,
    Conversation,
    ConversationSummary,
    ImportResult,
    Message,
    SearchHit,
    Turn,
)
from assistant.store.search import Budget, run_search, within

if TYPE_CHECKING:
    from assistant.store.documents import DocumentRepository
    from assistant.store.users import UserRepository

CHECKPOINT_EVERY = 300.0  # seconds between background wal_checkpoint(TRUNCATE)s
EXPORT_BATCH = 20  # conversations read at a time by export_chunks


@dataclass
class _Shared:
    """What every view of one database (:meth:`Store.owned_by`) shares, and changes."""

    refusal: StorageError | None = None  # a damaged file: every write refused
    last_time: datetime = field(default_factory=lambda: datetime.fromtimestamp(0, UTC))
    last_checkpoint: float = field(default_factory=time.monotonic)
    clock_lock: threading.Lock = field(default_factory=threading.Lock)
    checkpoint_lock: threading.Lock = field(default_factory=threading.Lock)


class Store:
    """Open with :meth:`open`; close with :meth:`close`. Safe to share between threads.

    A store sees the conversations and documents of one owner: the daemon's owner (0, the one
    :meth:`open` returns), or a user (:meth:`owned_by`). Another owner's conversation,
    message or document is not found, and never listed, searched or exported.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = db.writer(engine)
        self._sql = turns.TurnSQL(engine)
        self._where = str(db.sqlite_path(str(engine.url)) or engine.url)
        self._shared = _Shared()
        self._owner = 0

    @classmethod
    def open(cls, target: Settings | str, *, check: bool = True) -> Store:
        """Open (creating and migrating as needed) the database of ``target``.

        ``target`` is the settings (``store.url`` or ``<data_dir>/assistant.sqlite3``) or a
        database URL. Raises StorageError for a damaged file, saying what to do with it.
        """
        url = target if isinstance(target, str) else db.database_url(target)
        engine = db.create(url)
        where = str(db.sqlite_path(url) or url)
        try:
            with db.translated(where):
                if check:
                    db.check(engine)
                migrations.migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def owner(self) -> int:
        """Whose data this store sees: 0 the daemon's owner, else a user's id."""
        return self._owner

    def owned_by(self, owner: int) -> Store:
        """The same database (connections, clock, refusal), seen as ``owner``'s."""
        if owner == self._owner:
            return self
        view = copy.copy(self)
        view._owner = owner
        return view

    @property
    def users(self) -> UserRepository:
        """The users of a shared daemon and their tokens (see :mod:`assistant.store.users`)."""
        from assistant.store.users import UserRepository

        return UserRepository(self)

    @property
    def documents(self) -> DocumentRepository:
        """The user's documents and their chunks (see :mod:`assistant.store.documents`)."""
        from assistant.store.documents import DocumentRepository

        return DocumentRepository(self)

    def close(self) -> None:
        with contextlib.suppress(StorageError, sa_exc.DBAPIError):
            self.checkpoint()
        self._engine.dispose()

    def check(self) -> None:
        """Assert the connection settings and run ``quick_check`` (the daemon does, on start)."""
        with db.translated(self._where):
            db.check(self._engine)

    def checkpoint(self) -> tuple[int, int, int] | None:
        with self._shared.checkpoint_lock, db.translated(self._where):
            self._shared.last_checkpoint = time.monotonic()
            return db.checkpoint(self._engine)

    # -- plumbing ------------------------------------------------------------------------------

    def _failed(self, error: sa_exc.DBAPIError) -> StorageError:
        translated = db.translate(error, self._where)
        if isinstance(translated, StorageUnavailable):
            # A connection that hit a full disk or a read-only file is not reused: the next
            # call opens a fresh one and succeeds as soon as the condition has passed.
            self._engine.dispose()
        elif db.is_corruption(error):
            self._shared.refusal = translated
        return translated

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._shared.refusal is not None:
            raise self._shared.refusal
        try:
            with self._writer.begin() as conn:
                yield conn
        except sa_exc.DBAPIError as error:
            raise self._failed(error) from error
        if time.monotonic() - self._shared.last_checkpoint > CHECKPOINT_EVERY:
            self._shared.last_checkpoint = time.monotonic()
            threading.Thread(target=self._background_checkpoint, daemon=True).start()

    def _background_checkpoint(self) -> None:
        with contextlib.suppress(StorageError):
            self.checkpoint()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa_exc.DBAPIError as error:
            raise self._failed(error) from error

    def _now(self) -> datetime:
        """Now, strictly after the previous call, so creation order is total."""
        shared = self._shared
        with shared.clock_lock:
            now = datetime.now(UTC)
            if now <= shared.last_time:
                now = shared.last_time + timedelta(microseconds=1)
            shared.last_time = now
            return now

    # -- the turn lifecycle ---------------------------------------------------------------------

    def begin_turn(
        self,
        conversation_id: str | None,
        text: str,
        *,
        parent_id: str | None = None,
        model: str | None = None,
        title_hint: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Turn:
        """Commit the user's message and a ``streaming`` assistant message answering it.

        ``conversation_id`` None starts a conversation (titled ``title_hint`` or from
        ``text``). ``parent_id`` None continues from the active leaf; otherwise the turn
        branches from that message. The new assistant message becomes the active leaf.
        """
        parent = turns.ACTIVE if parent_id is None else parent_id
        with self._write() as conn:
            return turns.begin(conn, self._sql, self._now, conversation_id, text, parent,
                               model=model, title_hint=title_hint, settings=settings,
                               owner=self._owner)

    def save_partial(self, message_id: str, text: str) -> None:
        """Keep the text streamed so far; a crash then loses at most the last interval."""
        with self._write() as conn:
            turns.save_partial(conn, self._sql, message_id, text)

    def finalize(
        self,
        message_id: str,
        *,
        status: str,
        content: str,
        skill: str | None = None,
        route: dict[str, Any] | None = None,
        model: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        timings: dict[str, Any] | None = None,
        confidence: float | None = None,
        citations: list[dict[str, Any]] | None = None,
    ) -> Message:
        """Commit the reply's final state, once; a second call raises StorageError."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        with self._write() as conn:
            return turns.finalize(
                conn, self._sql, self._now, message_id, status=status, content=content,
                skill=skill, route=route, model=model, prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens, timings=timings, confidence=confidence,
                citations=citations,
            )

    def recover(self) -> int:
        """Mark messages a crash left ``streaming`` as ``incomplete`` (text kept); the count."""
        with self._write() as conn:
            return turns.recover(conn)

    # -- branching ------------------------------------------------------------------------------

    def edit_message(self, message_id: str, new_text: str, *, model: str | None = None) -> Turn:
        """A new user message beside ``message_id`` (a new branch) and its streaming reply."""
        original = self.message(message_id)
        if original.role != "user":
            raise RequestError(f"Message {message_id} is not a user message; only those can "
                               "be edited.", code="not_editable", param="id")
        with self._write() as conn:
            return turns.begin(conn, self._sql, self._now, original.conversation_id, new_text,
                               original.parent_id, model=model, owner=self._owner)

    def regenerate(self, assistant_message_id: str, *, model: str | None = None) -> Turn:
        """A new streaming assistant message beside ``assistant_message_id``."""
        old = self.message(assistant_message_id)
        if old.role != "assistant" or old.parent_id is None:
            raise RequestError(f"Message {assistant_message_id} is not an assistant reply.",
                               code="not_regenerable", param="id")
        with self._write() as conn:
            return turns.add_reply(conn, self._now, old, model)

    def switch_branch(self, message_id: str) -> Conversation:
        """Make the branch through ``message_id`` active, down to its newest leaf."""
        conversation = self.get_conversation(self.message(message_id).conversation_id)
        leaf = message_id
        while children := conversation.children(leaf):
            leaf = children[-1].id
        with self._write() as conn:
            turns.set_active_leaf(conn, conversation.id, leaf)
        return self.get_conversation(conversation.id)

    # -- compaction summaries -------------------------------------------------------------------

    def add_summary(
        self, before_message_id: str, text: str, *, model: str | None = None,
        prompt_tokens: int = 0, completion_tokens: int = 0,
        timings: dict[str, Any] | None = None,
    ) -> Message:
        """Insert a ``summary`` message into the path just above ``before_message_id``.

        From then on the model is given the summary instead of every message before it (see
        :func:`assistant.store.records.model_context`); the messages themselves stay, and
        :meth:`set_summary_undone` takes the summary out of the context again.
        """
        with self._write() as conn:
            return turns.add_summary(
                conn, self._now, before_message_id, text, model=model,
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                timings=timings,
            )

    def set_summary_undone(self, message_id: str, undone: bool = True) -> Message:
        """Take a summary out of the model's context (``undone``), or put it back."""
        self.message(message_id)  # another owner's is not found
        with self._write() as conn:
            return turns.set_summary_undone(conn, self._now, message_id, undone)

    # -- reading --------------------------------------------------------------------------------

    def message(self, message_id: str) -> Message:
        with self._read() as conn:
            return queries.message(conn, message_id, self._owner)

    def history(self, message_id: str) -> list[Message]:
        """The path from the root to ``message_id``: the context a reply is generated from."""
        conversation = self.get_conversation(self.message(message_id).conversation_id)
        return conversation.path_to(message_id)

    def get_conversation(self, conversation_id: str) -> Conversation:
        found = self.conversations([conversation_id])
        if not found:
            raise not_found("conversation", conversation_id)
        return found[0]

    def conversations(self, ids: Sequence[str] | None = None) -> list[Conversation]:
        """Whole conversations (all branches); every one when ``ids`` is None, oldest first."""
        with self._read() as conn:
            return queries.conversations(conn, ids, self._owner)

    def list_conversations(
        self,
        *,
        archived: bool | None = False,
        pinned: bool | None = None,
        skill: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[ConversationSummary]:
        """Pinned first, then most recently updated. ``archived``/``pinned`` None: either.

        ``since``/``until`` keep conversations active in that range (updated on or after
        ``since``, started before ``until``); ``skill`` those with a reply by that skill.
        """
        with self._read() as conn:
            return queries.list_conversations(
                conn, owner=self._owner, archived=archived, pinned=pinned, skill=skill,
                since=since, until=until, limit=limit, offset=offset,
            )

    def search(
        self, query: str, *, skill: str | None = None, limit: int = 20,
        highlight: tuple[str, str] = ("**", "**"), timeout: float | None = None,
        started: float | None = None, cancel: threading.Event | None = None,
    ) -> list[SearchHit]:
        """Messages matching ``query`` (words, all required; ``word*`` a prefix), best first.

        The database stops the search ``timeout`` seconds after ``started`` (a
        ``time.monotonic()`` value; default: now), or once ``cancel`` is set (RequestError
        ``search_timeout``, or 499 when cancelled).

        With Chinese, Japanese or Korean in it, every term of ``query`` is a substring
        (:mod:`~assistant.store.cjk`). The snippet marks matches with ``highlight``.
        ``skill`` keeps replies by that skill and the user messages they answer. A query
        matching more than :data:`~assistant.store.search.RANK_WINDOW` messages ranks the
        most recently stored ones of them: bm25 separates little among that many, and it
        keeps search fast.
        """
        budget = Budget(timeout, time.monotonic() if started is None else started, cancel)
        with self._read() as conn, within(conn, budget):
            return run_search(conn, query, skill=skill, limit=limit, highlight=highlight,
                              owner=self._owner)

    # -- editing --------------------------------------------------------------------------------

    def _update_conversation(self, conversation_id: str, **values: Any) -> None:
        with self._write() as conn:
            set_conversation_fields(conn, conversation_id, self._owner, **values)

    def rename(self, conversation_id: str, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            raise RequestError("A title cannot be empty.", param="title")
        self._update_conversation(conversation_id, title=title)

    def archive(self, conversation_id: str, archived: bool = True) -> None:
        self._update_conversation(conversation_id, archived=archived)

    def pin(self, conversation_id: str, pinned: bool = True) -> None:
        self._update_conversation(conversation_id, pinned=pinned)

    def delete(self, conversation_id: str) -> None:
        """Delete the conversation and every message in it (the search index follows)."""
        with self._write() as conn:
            delete_conversation(conn, conversation_id, self._owner)

    # -- export and import ----------------------------------------------------------------------

    def export(self, ids: Sequence[str] | None = None, *, format: str = "json") -> str:
        """Our lossless JSON (``format="json"``) or Markdown (``"md"``) of some or all."""
        return "".join(self.export_chunks(ids, format=format))

    def export_chunks(self, ids: Sequence[str] | None = None, *,
                      format: str = "json") -> Iterator[str]:
        """:meth:`export` in pieces, read :data:`EXPORT_BATCH` conversations at a time as the
        pieces are taken, so that memory does not grow with the history. An unknown id or
        format is raised here, before the first piece; a conversation deleted meanwhile is
        left out."""
        if format not in ("json", "md", "markdown"):
            raise RequestError(f"Unknown export format {format!r}; use json or md.",
                               param="format")
        with self._read() as conn:
            order = queries.conversation_ids(conn, ids, self._owner)
        if ids is not None:
            missing = set(ids) - set(order)
            if missing:
                raise not_found("conversation", sorted(missing)[0])

        def conversations() -> Iterator[Conversation]:
            for start in range(0, len(order), EXPORT_BATCH):
                yield from self.conversations(order[start:start + EXPORT_BATCH])

        if format == "json":
            return exchange.json_chunks(conversations())
        return exchange.markdown_chunks(conversations())

    def import_data(self, data: str | bytes, *, format: str = "auto") -> ImportResult:
        """Import our JSON or ChatGPT's conversations.json in one transaction.

        Conversations whose id is already stored are skipped, so importing twice is harmless.
        A malformed file raises :class:`~assistant.errors.MalformedImport` and stores
        nothing.
        """
        return self.add_conversations(exchange.parse(data, format))

    def add_conversations(self, conversations: Iterable[Conversation]) -> ImportResult:
        """Store conversations whole, in one transaction; those already stored are skipped."""
        with self._write() as conn:
            return import_conversations(conn, conversations, self._owner)
