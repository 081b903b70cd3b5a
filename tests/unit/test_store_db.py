"""The database itself: migrations from blank, connection settings, faults, concurrency.

Tests with a ``store`` run on SQLite and PostgreSQL (tests/databases.py); those about SQLite's
own file, pragmas and WAL are marked ``sqlite_only``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, inspect

from assistant.config import load_settings
from assistant.errors import StorageError, StorageUnavailable
from assistant.store import Store, db, migrations
from assistant.store.schema import Base
from tests.databases import Database, sqlite_only


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = Store.open(load_settings())
    yield s
    s.close()


def db_file() -> Path:
    return Path(os.environ["ASSISTANT_DATA_DIR"]) / db.DB_FILENAME


def test_importing_the_store_touches_no_disk(tmp_path: Path) -> None:
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(tmp_path / "never"),
           "XDG_DATA_HOME": str(tmp_path / "xdg")}
    subprocess.run(
        [sys.executable, "-c", "import assistant.store, assistant.store.repository, "
         "assistant.cli.history, assistant.daemon.history_api"],
        env=env, check=True,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_blank_database_is_migrated_to_latest_once(store: Store) -> None:
    assert db_file().exists() == (store.engine.dialect.name == "sqlite")
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT version, description FROM schema_version").all()
    assert [r[0] for r in rows] == [m.version for m in migrations.MIGRATIONS]
    # Opening again applies nothing and keeps the data.
    turn = store.begin_turn(None, "hello")
    assert migrations.migrate(store.engine) == []
    again = Store.open(load_settings())
    assert again.get_conversation(turn.conversation_id).messages[0].content == "hello"
    again.close()


def test_orm_schema_matches_the_migrated_tables(store: Store) -> None:
    inspector = inspect(store.engine)
    postgresql = store.engine.dialect.name == "postgresql"
    # PostgreSQL's full-text index is a generated column of the table it indexes.
    index_columns = {"messages": {"tsv"}, "chunks": {"tsv"}} if postgresql else {}
    for table in Base.metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        expected = set(table.columns.keys()) | index_columns.get(table.name, set())
        assert migrated == expected, table.name
    names = set(inspector.get_table_names())
    if postgresql:
        assert names == {t.name for t in Base.metadata.sorted_tables} | {"schema_version"}
        gin = {i["name"] for t in ("messages", "chunks") for i in inspector.get_indexes(t)
               if i.get("dialect_options", {}).get("postgresql_using") == "gin"}
        assert gin == {"ix_messages_tsv", "ix_chunks_tsv"}
    else:
        assert {"messages_fts", "chunks_fts", "schema_version"} <= names


def test_newer_database_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO schema_version VALUES (999, 'from the future', '2099')"
        )
    with pytest.raises(StorageError, match="newer"):
        Store.open(load_settings())


@sqlite_only
def test_connection_settings_are_asserted(store: Store) -> None:
    store.check()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    problems = db.compare_pragmas(
        {"journal_mode": "delete", "synchronous": 1, "foreign_keys": 0, "busy_timeout": 0}
    )
    assert len(problems) == 4


def test_writes_begin_immediate_and_reads_deferred(store: Store) -> None:
    """A writer takes the write lock up front (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
    writers' advisory lock); a reader takes none."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN") or "advisory" in statement:
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    store.begin_turn(None, "hi")
    store.list_conversations()
    event.remove(store.engine, "before_cursor_execute", record)
    if store.engine.dialect.name == "sqlite":
        assert seen == ["BEGIN IMMEDIATE", "BEGIN"]
    else:
        assert seen == [f"SELECT pg_advisory_xact_lock({db.WRITE_LOCK_KEY})"]


@sqlite_only
def test_checkpoint_truncates_the_wal(store: Store) -> None:
    for i in range(50):
        store.begin_turn(None, f"message {i} " + "x" * 2000)
    wal = db_file().with_name(db.DB_FILENAME + "-wal")
    assert wal.stat().st_size > 0
    busy, _, _ = store.checkpoint() or (1, 0, 0)
    assert busy == 0
    assert wal.stat().st_size == 0


def _count_messages(store: Store) -> int:
    return sum(c.message_count for c in store.list_conversations(archived=None, limit=None))


@sqlite_only
def test_disk_full_is_unavailable_and_recovers(store: Store) -> None:
    store.begin_turn(None, "before the disk filled")
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

    def cap(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(store.engine, "connect", cap)
    store.engine.dispose()
    with pytest.raises(StorageUnavailable, match="disk is full"):
        store.begin_turn(None, "y" * 200_000)
    # Space is back. The connection that failed carried the cap (as a real connection may
    # carry a failed state): the store must have dropped it rather than reuse it.
    event.remove(store.engine, "connect", cap)
    assert _count_messages(store) == 2  # nothing half-written
    store.begin_turn(None, "y" * 200_000)
    assert _count_messages(store) == 4


def test_read_only_database_is_unavailable_and_recovers(store: Store) -> None:
    """SQLite's file, or a PostgreSQL server, turned read-only (a standby after a failover)."""
    turn = store.begin_turn(None, "hello")

    def read_only(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA query_only = ON")
        else:
            dbapi_connection.execute("SET default_transaction_read_only = on")
            dbapi_connection.commit()

    event.listen(store.engine, "connect", read_only)
    store.engine.dispose()
    with pytest.raises(StorageUnavailable, match="read-only"):
        store.save_partial(turn.assistant_message.id, "partial")
    event.remove(store.engine, "connect", read_only)  # writable again
    assert store.message(turn.assistant_message.id).content == ""  # nothing was written
    store.save_partial(turn.assistant_message.id, "partial")
    assert store.message(turn.assistant_message.id).content == "partial"


@sqlite_only
def test_read_only_file_opened_read_only(store: Store) -> None:
    store.begin_turn(None, "hello")
    store.close()
    ro = Store.open(f"sqlite:///file:{db_file()}?mode=ro&uri=true")
    try:
        assert len(ro.list_conversations()) == 1
        with pytest.raises(StorageUnavailable):
            ro.begin_turn(None, "refused")
    finally:
        ro.close()


def test_garbage_file_is_refused_and_kept() -> None:
    path = db_file()
    path.parent.mkdir(parents=True)
    garbage = b"this is not a database\n" * 500
    path.write_bytes(garbage)
    with pytest.raises(StorageError) as caught:
        Store.open(load_settings())
    assert not isinstance(caught.value, StorageUnavailable)
    assert "damaged" in caught.value.message and "untouched" in caught.value.message
    assert ".recover" in (caught.value.hint or "")
    assert path.read_bytes() == garbage


@sqlite_only
def test_damaged_page_is_detected_at_open(store: Store) -> None:
    for i in range(300):
        store.begin_turn(None, f"conversation number {i} " + "words " * 50)
    store.close()
    path = db_file()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 40 * page
    for start in range(10 * page, 30 * page, page):  # trash the middle of the b-trees
        data[start + 8:start + 1000] = os.urandom(992)
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="damaged"):
        Store.open(load_settings())


@sqlite_only
def test_damage_found_while_running_stops_all_writes(store: Store) -> None:
    for i in range(300):
        store.begin_turn(None, f"conversation number {i} " + "words " * 50)
    store.checkpoint()
    path = db_file()
    size = path.stat().st_size
    with path.open("r+b") as fh:  # damaged in place, under the running store
        for start in range(2 * 4096, size - 4096, 4096):
            fh.seek(start + 8)
            fh.write(os.urandom(200))
    store.engine.dispose()  # drop page caches, as a restart or a cache miss would
    with pytest.raises(StorageError, match="damaged"):
        store.conversations()
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda conn, cur, statement, *a: statements.append(statement))
    with pytest.raises(StorageError, match="damaged") as caught:
        store.begin_turn(None, "must not be written")
    assert statements == []  # refused before touching the file
    assert "sqlite3" in (caught.value.hint or "")


STRESS_SECONDS = float(os.environ.get("ASSISTANT_STORE_STRESS_SECONDS", "3"))


def stress(store: Store, seconds: float, readers: int = 8) -> dict[str, Any]:
    """One writer streaming turns and ``readers`` threads listing, showing and searching."""
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []
    counts = {"turns": 0, "reads": 0}
    lock = threading.Lock()

    def writer() -> None:
        conversation = None
        try:
            while time.monotonic() < stop:
                turn = store.begin_turn(conversation, "tell me about sqlite locking")
                conversation = turn.conversation_id if counts["turns"] % 20 else None
                store.save_partial(turn.assistant_message.id, "WAL lets readers")
                store.finalize(turn.assistant_message.id, status="complete",
                               content="WAL lets readers and a writer work together",
                               skill="chat")
                counts["turns"] += 1
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while time.monotonic() < stop:
                listed = store.list_conversations(limit=5)
                if listed:
                    store.get_conversation(listed[0].id)
                store.search("readers writer", limit=5)
                with lock:
                    counts["reads"] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"errors": errors, **counts}


def test_one_writer_and_eight_readers_never_see_a_lock(store: Store) -> None:
    result = stress(store, STRESS_SECONDS)
    assert result["errors"] == []
    assert result["turns"] > 0 and result["reads"] > 0
