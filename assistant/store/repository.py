"""The conversation store: the one object that opens the database and the only code that writes it.

The daemon drives a turn through :meth:`Store.begin_turn` (user message committed, assistant
message created ``streaming``), :meth:`Store.save_partial` while tokens arrive, and
:meth:`Store.finalize` once. :meth:`Store.recover` on start marks what a crash left streaming as
``incomplete``. Driver errors leave as :class:`StorageUnavailable` (disk full, read-only, busy:
try later; the connection pool is dropped so the next call starts clean) or
:class:`StorageError`; a damaged file makes the store refuse every further write.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import delete as sql_delete
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Row

from assistant.config import Settings
from assistant.errors import MalformedImport, RequestError, StorageError, StorageUnavailable
from assistant.store import db, exchange, migrations
from assistant.store.records import (
    FINAL_STATUSES,
    Conversation,
    ConversationSummary,
    ImportResult,
    Message,
    SearchHit,
    Turn,
)
from assistant.store.schema import ConversationRow, MessageRow, format_time, parse_time
from assistant.store.search import run_search

if TYPE_CHECKING:
    from assistant.store.documents import DocumentRepository

C = cast(Table, ConversationRow.__table__)
M = cast(Table, MessageRow.__table__)
TITLE_LENGTH = 60
CHECKPOINT_EVERY = 300.0  # seconds between background wal_checkpoint(TRUNCATE)s
_ACTIVE = object()  # "continue from the conversation's active leaf"


def make_title(text: str) -> str:
    """A short title from the first user message: its first line, cut at a word."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if len(line) <= TITLE_LENGTH:
        return line or "New conversation"
    cut = line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] or line[: TITLE_LENGTH - 1]
    return cut.rstrip(" ,.;:") + "…"


def new_id() -> str:
    return uuid.uuid4().hex


def _not_found(what: str, ident: str) -> RequestError:
    return RequestError(f"No {what} with id {ident}.", status=404, code="not_found", param="id")


def _message(row: Row[Any]) -> Message:
    return Message(
        id=row.id, conversation_id=row.conversation_id, parent_id=row.parent_id, role=row.role,
        content=row.content, status=row.status, created=row.created, skill=row.skill,
        route=row.route, model=row.model, prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens, timings=row.timings,
    )


def _parents_first(messages: list[Message]) -> tuple[Message, ...]:
    """Storage order, except that a parent always comes before its children.

    A summary is stored after the messages it is inserted above (:meth:`Store.add_summary`).
    """
    order = {m.id: i for i, m in enumerate(messages)}
    if all(m.parent_id is None or order.get(m.parent_id, -1) < i
           for i, m in enumerate(messages)):
        return tuple(messages)  # the usual case: nothing to move
    children: dict[str | None, list[Message]] = {}
    for m in messages:
        children.setdefault(m.parent_id if m.parent_id in order else None, []).append(m)
    ready = [(order[m.id], m) for m in children.get(None, [])]
    heapq.heapify(ready)
    ordered: list[Message] = []
    while ready:  # the earliest stored of the messages whose parent is already placed
        _, message = heapq.heappop(ready)
        ordered.append(message)
        for child in children.get(message.id, []):
            heapq.heappush(ready, (order[child.id], child))
    return tuple(ordered)


def _message_values(m: Message) -> dict[str, Any]:
    return {
        "id": m.id, "conversation_id": m.conversation_id, "parent_id": m.parent_id,
        "role": m.role, "content": m.content, "status": m.status, "skill": m.skill,
        "route": m.route, "model": m.model, "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens, "timings": m.timings, "created": m.created,
    }


_MESSAGE_COLUMNS = [M.c[name] for name in (
    "id", "conversation_id", "parent_id", "role", "content", "status", "skill", "route",
    "model", "prompt_tokens", "completion_tokens", "timings", "created",
)]

_INSERT_MESSAGE = insert(M)
_TOUCH = update(C).where(C.c.id == bindparam("cid")).values(
    updated=bindparam("at", type_=C.c.updated.type))


class _TurnSQL:
    """The statements run on every turn (and every half second while one streams).

    Plain SQL compiled once for the engine's driver (:class:`~assistant.store.db.Prepared`):
    values go in as stored (timestamps :func:`format_time`, JSON encoded here). RETURNING
    needs SQLite 3.35 or PostgreSQL.
    """

    def __init__(self, engine: Engine) -> None:
        def prepare(sql: str) -> db.Prepared:
            return db.prepare(engine, sql)

        self.leaf_of = prepare("SELECT active_leaf_id FROM conversations WHERE id = :cid")
        self.owner_of = prepare("SELECT conversation_id FROM messages WHERE id = :mid")
        self.new_conversation = prepare(
            "INSERT INTO conversations (id, title, created, updated, archived, pinned, model, "
            "settings, active_leaf_id) VALUES (:cid, :title, :created, :updated, :no, :no, "
            ":model, :settings, :leaf)")
        # Columns left out take their defaults: no skill, route or timings, no tokens.
        self.new_message = prepare(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, status, model, "
            "created) VALUES (:id, :cid, :parent, :role, :content, :status, :model, :created)")
        self.move_leaf = prepare(
            "UPDATE conversations SET active_leaf_id = :leaf, updated = :at WHERE id = :cid")
        self.touch = prepare("UPDATE conversations SET updated = :at WHERE id = :cid")
        self.save_partial = prepare(
            "UPDATE messages SET content = :text WHERE id = :mid AND status = 'streaming'")
        self.finalize = prepare(
            "UPDATE messages SET status = :status, content = :content, skill = :skill, "
            "route = :route, model = COALESCE(:model, model), prompt_tokens = :prompt_tokens, "
            "completion_tokens = :completion_tokens, timings = :timings "
            "WHERE id = :mid AND status = 'streaming' "
            "RETURNING conversation_id, parent_id, role, model, created")


def _json(value: dict[str, Any] | None) -> str | None:
    """As the ORM's JSON columns store it (None is NULL)."""
    return None if value is None else json.dumps(value)


class Store:
    """Open with :meth:`open`; close with :meth:`close`. Safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = db.writer(engine)
        self._sql = _TurnSQL(engine)
        self._where = str(db.sqlite_path(str(engine.url)) or engine.url)
        self._refusal: StorageError | None = None
        self._clock_lock = threading.Lock()
        self._last_time = datetime.fromtimestamp(0, UTC)
        self._checkpoint_lock = threading.Lock()
        self._last_checkpoint = time.monotonic()

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
        with self._checkpoint_lock, db.translated(self._where):
            self._last_checkpoint = time.monotonic()
            return db.checkpoint(self._engine)

    # -- plumbing ------------------------------------------------------------------------------

    def _failed(self, error: sa_exc.DBAPIError) -> StorageError:
        translated = db.translate(error, self._where)
        if isinstance(translated, StorageUnavailable):
            # A connection that hit a full disk or a read-only file is not reused: the next
            # call opens a fresh one and succeeds as soon as the condition has passed.
            self._engine.dispose()
        elif db.is_corruption(error):
            self._refusal = translated
        return translated

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._refusal is not None:
            raise self._refusal
        try:
            with self._writer.begin() as conn:
                yield conn
        except sa_exc.DBAPIError as error:
            raise self._failed(error) from error
        if time.monotonic() - self._last_checkpoint > CHECKPOINT_EVERY:
            self._last_checkpoint = time.monotonic()
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
        with self._clock_lock:
            now = datetime.now(UTC)
            if now <= self._last_time:
                now = self._last_time + timedelta(microseconds=1)
            self._last_time = now
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
        return self._begin(conversation_id, text, _ACTIVE if parent_id is None else parent_id,
                           model=model, title_hint=title_hint, settings=settings)

    def _begin(
        self, conversation_id: str | None, text: str, parent: object, *, model: str | None,
        title_hint: str | None = None, settings: dict[str, Any] | None = None,
    ) -> Turn:
        sql = self._sql
        user_id, reply_id = new_id(), new_id()
        with self._write() as conn:
            now, reply_at = self._now(), self._now()
            asked, replied = format_time(now), format_time(reply_at)
            created = conversation_id is None
            if conversation_id is None:
                conversation_id = new_id()
                # Born with its leaf: the reply is inserted next, in the same transaction.
                sql.new_conversation.run(
                    conn, cid=conversation_id, title=title_hint or make_title(text),
                    created=asked, updated=replied, no=False, model=model,
                    settings=json.dumps(settings) if settings else "{}", leaf=reply_id)
                leaf = None
            else:
                found = sql.leaf_of.rows(conn, cid=conversation_id)
                if not found:
                    raise _not_found("conversation", conversation_id)
                leaf = found[0][0]
            if parent is _ACTIVE:
                parent_id = leaf
            else:
                parent_id = cast(str | None, parent)
                if parent_id is not None:
                    owner = sql.owner_of.rows(conn, mid=parent_id)
                    if not owner or owner[0][0] != conversation_id:
                        raise _not_found(f"message in conversation {conversation_id}", parent_id)
            sql.new_message.run_many(conn, [
                {"id": user_id, "cid": conversation_id, "parent": parent_id, "role": "user",
                 "content": text, "status": "complete", "model": None, "created": asked},
                {"id": reply_id, "cid": conversation_id, "parent": user_id, "role": "assistant",
                 "content": "", "status": "streaming", "model": model, "created": replied},
            ])
            if not created:
                sql.move_leaf.run(conn, cid=conversation_id, leaf=reply_id, at=replied)
        user = Message(id=user_id, conversation_id=conversation_id, parent_id=parent_id,
                       role="user", content=text, status="complete", created=now)
        reply = Message(id=reply_id, conversation_id=conversation_id, parent_id=user_id,
                        role="assistant", content="", status="streaming", created=reply_at,
                        model=model)
        return Turn(conversation_id, user, reply, created_conversation=created)

    def save_partial(self, message_id: str, text: str) -> None:
        """Keep the text streamed so far; a crash then loses at most the last interval."""
        with self._write() as conn:
            if self._sql.save_partial.run(conn, mid=message_id, text=text) == 0:
                self._explain_not_streaming(conn, message_id)

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
    ) -> Message:
        """Commit the reply's final state, once; a second call raises StorageError."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        route_json, timings_json = _json(route), _json(timings)
        with self._write() as conn:
            found = self._sql.finalize.rows(
                conn, mid=message_id, status=status, content=content, skill=skill,
                route=route_json, model=model, prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens, timings=timings_json,
            )
            if not found:
                self._explain_not_streaming(conn, message_id)
            conversation_id, parent_id, role, stored_model, created = found[0]
            self._sql.touch.run(conn, cid=conversation_id, at=format_time(self._now()))
        return Message(
            id=message_id, conversation_id=conversation_id, parent_id=parent_id, role=role,
            content=content, status=status, created=parse_time(created), skill=skill,
            model=stored_model, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            # Read back from what was stored, as every other read of the message is.
            route=None if route_json is None else json.loads(route_json),
            timings=None if timings_json is None else json.loads(timings_json),
        )

    def _explain_not_streaming(self, conn: Connection, message_id: str) -> NoReturn:
        status = conn.execute(select(M.c.status).where(M.c.id == message_id)).scalar()
        if status is None:
            raise _not_found("message", message_id)
        raise StorageError(f"Message {message_id} is already finalized ({status}).")

    def recover(self) -> int:
        """Mark messages a crash left ``streaming`` as ``incomplete`` (text kept); the count."""
        with self._write() as conn:
            result = conn.execute(
                update(M).where(M.c.status == "streaming").values(status="incomplete")
            )
            return int(result.rowcount)

    # -- branching ------------------------------------------------------------------------------

    def edit_message(self, message_id: str, new_text: str, *, model: str | None = None) -> Turn:
        """A new user message beside ``message_id`` (a new branch) and its streaming reply."""
        original = self.message(message_id)
        if original.role != "user":
            raise RequestError(f"Message {message_id} is not a user message; only those can "
                               "be edited.", code="not_editable", param="id")
        return self._begin(original.conversation_id, new_text, original.parent_id, model=model)

    def regenerate(self, assistant_message_id: str, *, model: str | None = None) -> Turn:
        """A new streaming assistant message beside ``assistant_message_id``."""
        old = self.message(assistant_message_id)
        if old.role != "assistant" or old.parent_id is None:
            raise RequestError(f"Message {assistant_message_id} is not an assistant reply.",
                               code="not_regenerable", param="id")
        with self._write() as conn:
            user = _message(conn.execute(
                select(*_MESSAGE_COLUMNS).where(M.c.id == old.parent_id)).one())
            reply = Message(id=new_id(), conversation_id=old.conversation_id,
                            parent_id=user.id, role="assistant", content="",
                            status="streaming", created=self._now(), model=model or old.model)
            conn.execute(insert(M).values(**_message_values(reply)))
            conn.execute(update(C).where(C.c.id == old.conversation_id)
                         .values(active_leaf_id=reply.id, updated=reply.created))
        return Turn(old.conversation_id, user, reply)

    def switch_branch(self, message_id: str) -> Conversation:
        """Make the branch through ``message_id`` active, down to its newest leaf."""
        conversation = self.get_conversation(self.message(message_id).conversation_id)
        leaf = message_id
        while children := conversation.children(leaf):
            leaf = children[-1].id
        with self._write() as conn:
            conn.execute(update(C).where(C.c.id == conversation.id)
                         .values(active_leaf_id=leaf))
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
            before = conn.execute(
                select(*_MESSAGE_COLUMNS).where(M.c.id == before_message_id)).first()
            if before is None:
                raise _not_found("message", before_message_id)
            summary = Message(
                id=new_id(), conversation_id=before.conversation_id,
                parent_id=before.parent_id, role="summary", content=text, status="complete",
                created=self._now(), model=model, prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens, timings=timings,
            )
            conn.execute(_INSERT_MESSAGE, _message_values(summary))
            conn.execute(update(M).where(M.c.id == before_message_id)
                         .values(parent_id=summary.id))
            conn.execute(_TOUCH, {"cid": summary.conversation_id, "at": summary.created})
        return summary

    def set_summary_undone(self, message_id: str, undone: bool = True) -> Message:
        """Take a summary out of the model's context (``undone``), or put it back."""
        with self._write() as conn:
            row = conn.execute(select(M.c.role).where(M.c.id == message_id)).first()
            if row is None:
                raise _not_found("message", message_id)
            if row.role != "summary":
                raise RequestError(f"Message {message_id} is not a summary; only summaries "
                                   "can be undone.", code="not_a_summary", param="id")
            found = conn.execute(
                update(M).where(M.c.id == message_id)
                .values(status="undone" if undone else "complete")
                .returning(*_MESSAGE_COLUMNS)).one()
            message = _message(found)
            conn.execute(_TOUCH, {"cid": message.conversation_id, "at": self._now()})
        return message

    # -- reading --------------------------------------------------------------------------------

    def message(self, message_id: str) -> Message:
        with self._read() as conn:
            row = conn.execute(select(*_MESSAGE_COLUMNS).where(M.c.id == message_id)).first()
        if row is None:
            raise _not_found("message", message_id)
        return _message(row)

    def history(self, message_id: str) -> list[Message]:
        """The path from the root to ``message_id``: the context a reply is generated from."""
        conversation = self.get_conversation(self.message(message_id).conversation_id)
        return conversation.path_to(message_id)

    def get_conversation(self, conversation_id: str) -> Conversation:
        found = self.conversations([conversation_id])
        if not found:
            raise _not_found("conversation", conversation_id)
        return found[0]

    def conversations(self, ids: Sequence[str] | None = None) -> list[Conversation]:
        """Whole conversations (all branches); every one when ``ids`` is None, oldest first."""
        with self._read() as conn:
            query = select(C).order_by(C.c.created, C.c.id)
            messages = select(*_MESSAGE_COLUMNS).order_by(M.c.seq)
            if ids is not None:
                query = query.where(C.c.id.in_(list(ids)))
                messages = messages.where(M.c.conversation_id.in_(list(ids)))
            rows = conn.execute(query).all()
            by_conversation: dict[str, list[Message]] = {r.id: [] for r in rows}
            for row in conn.execute(messages):
                by_conversation[row.conversation_id].append(_message(row))
        return [
            Conversation(
                id=r.id, title=r.title, created=r.created, updated=r.updated,
                archived=bool(r.archived), pinned=bool(r.pinned), model=r.model,
                settings=r.settings or {}, active_leaf_id=r.active_leaf_id,
                messages=_parents_first(by_conversation[r.id]),
            )
            for r in rows
        ]

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
        count = (select(func.count()).select_from(M).where(M.c.conversation_id == C.c.id)
                 .scalar_subquery())
        query = select(C, count.label("message_count"))
        if archived is not None:
            query = query.where(C.c.archived == archived)
        if pinned is not None:
            query = query.where(C.c.pinned == pinned)
        if skill is not None:
            query = query.where(exists().where(M.c.conversation_id == C.c.id,
                                               M.c.skill == skill))
        if since is not None:
            query = query.where(C.c.updated >= since)
        if until is not None:
            query = query.where(C.c.created < until)
        query = query.order_by(C.c.pinned.desc(), C.c.updated.desc(), C.c.id)
        query = query.limit(limit).offset(offset)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            ConversationSummary(
                id=r.id, title=r.title, created=r.created, updated=r.updated,
                archived=bool(r.archived), pinned=bool(r.pinned), model=r.model,
                message_count=int(r.message_count),
            )
            for r in rows
        ]

    def search(
        self, query: str, *, skill: str | None = None, limit: int = 20,
        highlight: tuple[str, str] = ("**", "**"),
    ) -> list[SearchHit]:
        """Messages matching ``query`` (words, all required; ``word*`` a prefix), best first.

        The snippet marks matches with ``highlight``. ``skill`` keeps replies by that skill
        and the user messages they answer. A query matching more than
        :data:`~assistant.store.search.RANK_WINDOW` messages ranks the most recently stored
        ones of them: bm25 separates little among that many, and it keeps search fast.
        """
        with self._read() as conn:
            return run_search(conn, query, skill=skill, limit=limit, highlight=highlight)

    # -- editing --------------------------------------------------------------------------------

    def _update_conversation(self, conversation_id: str, **values: Any) -> None:
        with self._write() as conn:
            result = conn.execute(update(C).where(C.c.id == conversation_id).values(**values))
            if result.rowcount == 0:
                raise _not_found("conversation", conversation_id)

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
            # Children before parents: the tree's own foreign key must never dangle.
            conn.execute(update(C).where(C.c.id == conversation_id).values(active_leaf_id=None))
            result = conn.execute(sql_delete(C).where(C.c.id == conversation_id))
            if result.rowcount == 0:
                raise _not_found("conversation", conversation_id)

    # -- export and import ----------------------------------------------------------------------

    def export(self, ids: Sequence[str] | None = None, *, format: str = "json") -> str:
        """Our lossless JSON (``format="json"``) or Markdown (``"md"``) of some or all."""
        conversations = self.conversations(ids)
        if ids is not None:
            missing = set(ids) - {c.id for c in conversations}
            if missing:
                raise _not_found("conversation", sorted(missing)[0])
        if format == "json":
            return exchange.to_json(conversations)
        if format in ("md", "markdown"):
            return exchange.to_markdown(conversations)
        raise RequestError(f"Unknown export format {format!r}; use json or md.",
                           param="format")

    def import_data(self, data: str | bytes, *, format: str = "auto") -> ImportResult:
        """Import our JSON or ChatGPT's conversations.json in one transaction.

        Conversations whose id is already stored are skipped, so importing twice is harmless.
        A malformed file raises :class:`~assistant.errors.MalformedImport` and stores
        nothing.
        """
        return self.add_conversations(exchange.parse(data, format))

    def add_conversations(self, conversations: Iterable[Conversation]) -> ImportResult:
        imported, skipped = [], []
        with self._write() as conn:
            for conv in conversations:
                if conn.execute(select(C.c.id).where(C.c.id == conv.id)).first():
                    skipped.append(conv.id)
                    continue
                ids = [m.id for m in conv.messages]
                for start in range(0, len(ids), 500):
                    clash = conn.execute(
                        select(M.c.id, M.c.conversation_id)
                        .where(M.c.id.in_(ids[start:start + 500]))
                    ).first()
                    if clash is not None:
                        raise MalformedImport(
                            f"Import failed: message {clash.id} of conversation {conv.id} is "
                            f"already stored in conversation {clash.conversation_id}. "
                            "Nothing was imported."
                        )
                conn.execute(insert(C).values(
                    id=conv.id, title=conv.title, created=conv.created, updated=conv.updated,
                    archived=conv.archived, pinned=conv.pinned, model=conv.model,
                    settings=conv.settings, active_leaf_id=conv.active_leaf_id,
                ))
                if conv.messages:
                    conn.execute(insert(M), [_message_values(m) for m in conv.messages])
                imported.append(conv.id)
        return ImportResult(tuple(imported), tuple(skipped))
