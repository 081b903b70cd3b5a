"""ORM rows. Only :mod:`assistant.store` uses them; everyone else gets :mod:`.records`.

The tables are created by :mod:`.migrations`, never by ``create_all``; a test checks that the
two agree. Messages have an integer ``seq`` (the rowid the full-text index points at) besides
their public string ``id``, because SQLite may renumber an implicit rowid on VACUUM. On
PostgreSQL, ``messages`` and ``chunks`` also have a generated ``tsv`` column (their full-text
index, :mod:`.postgres_search`) that no query here reads or writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def format_time(moment: datetime) -> str:
    """Fixed-width UTC ISO-8601 with microseconds: sorts as text, reads back exactly."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    # isoformat, not strftime("%Y"): glibc writes year 1 as "1", which neither sorts nor
    # reads back.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Timestamp(TypeDecorator[datetime]):
    """An aware datetime stored as :func:`format_time` text (portable, sortable, exact)."""

    impl = String(27)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        return None if value is None else format_time(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> datetime | None:
        return None if value is None else parse_time(value)


class JsonText(TypeDecorator[Any]):
    """A JSON value stored as its ``json.dumps`` text; None is NULL. The same bytes on every
    database (SQLAlchemy's JSON type would leave PostgreSQL's driver a string to decode)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


_Json = JsonText()


class Base(DeclarativeBase):
    pass


class ConversationRow(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(Timestamp)
    updated: Mapped[datetime] = mapped_column(Timestamp)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    model: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any] | None] = mapped_column(_Json)
    active_leaf_id: Mapped[str | None] = mapped_column(String(64))
    # 0: the daemon's owner; else the id of the user (:class:`UserRow`) it belongs to.
    owner: Mapped[int] = mapped_column(Integer, default=0)


class MessageRow(Base):
    __tablename__ = "messages"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    skill: Mapped[str | None] = mapped_column(Text)
    route: Mapped[dict[str, Any] | None] = mapped_column(_Json)
    model: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    timings: Mapped[dict[str, Any] | None] = mapped_column(_Json)
    created: Mapped[datetime] = mapped_column(Timestamp)
    confidence: Mapped[float | None] = mapped_column(Float)
    citations: Mapped[list[dict[str, Any]] | None] = mapped_column(_Json)


class DocumentRow(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, default="")
    sha256: Mapped[str] = mapped_column(String(64))
    added: Mapped[datetime] = mapped_column(Timestamp)
    chunker_version: Mapped[int] = mapped_column(Integer, default=0)
    # ISO 639-1, as assistant.text.detect_language found it; None: not known.
    language: Mapped[str | None] = mapped_column(String(16))
    owner: Mapped[int] = mapped_column(Integer, default=0)  # as a conversation's


class ChunkRow(Base):
    __tablename__ = "chunks"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    location: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    language: Mapped[str | None] = mapped_column(String(16))  # its document's


class UserRow(Base):
    """A user of a shared daemon, known by a token of which only the hash is kept."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(Timestamp)
    revoked: Mapped[datetime | None] = mapped_column(Timestamp)
