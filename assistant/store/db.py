"""The engine: where the database lives, how each connection is set up, and what its errors mean.

SQLite connections get WAL, ``synchronous=FULL`` (a committed message survives power loss),
foreign keys and a busy timeout. pysqlite's own transaction handling is switched off and
SQLAlchemy emits ``BEGIN`` itself (the recipe in SQLAlchemy's SQLite dialect documentation):
reads use a plain deferred ``BEGIN``, writes go through :func:`writer`, whose connections emit
``BEGIN IMMEDIATE`` so a writer takes the lock up front instead of failing mid-transaction.

On PostgreSQL (``postgresql+psycopg://``, any number of daemons on any number of machines
sharing one database) a :func:`writer` transaction takes a transaction-scoped advisory lock
first, the same for every writer: writes are serialized as SQLite's are, so each sees every
write committed before it (a turn continues from the leaf the previous turn left, an import
finds what another just imported) and no update is lost. Reads take no lock (MVCC). A
committed transaction is durable as PostgreSQL makes it (``synchronous_commit``, on by
default); connections are checked before use, so a restarted server costs no failed call.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPICursor

from assistant.config import Settings
from assistant.errors import StorageError, StorageUnavailable

DB_FILENAME = "assistant.sqlite3"
BUSY_TIMEOUT_MS = 10_000
# Bytes of WAL kept on disk after a checkpoint; beyond that the file is truncated.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
_BEGIN_OPTION = "assistant_sqlite_begin"
# Every writer's advisory lock on PostgreSQL: one 64-bit key, b"assistnt".
WRITE_LOCK_KEY = int.from_bytes(b"assistnt", "big")
_T = TypeVar("_T")

# Primary SQLite result codes (the low byte of an extended code).
_UNAVAILABLE = {
    3: "permission denied",  # SQLITE_PERM
    5: "the database is busy",  # SQLITE_BUSY
    6: "the database is locked",  # SQLITE_LOCKED
    8: "the database is read-only",  # SQLITE_READONLY
    10: "a disk I/O error occurred",  # SQLITE_IOERR
    13: "the disk is full",  # SQLITE_FULL
    14: "the database file cannot be opened",  # SQLITE_CANTOPEN
}
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
# PostgreSQL SQLSTATE classes that mean "not now": connection exception, insufficient
# resources, operator intervention (less 57014, a cancelled statement), system error.
_PG_UNAVAILABLE = {"08": "the database server cannot be reached",
                   "53": "the database server is out of resources",
                   "57": "the database server is shutting down or restarting",
                   "58": "the database server had a system error",
                   # read_only_sql_transaction: a standby, or a server made read-only
                   "25006": "the database is read-only"}


def database_url(settings: Settings) -> str:
    """``store.url`` if set, else SQLite at ``<data_dir>/assistant.sqlite3`` (dir made here)."""
    if settings.store.url:
        return settings.store.url
    from assistant.locations import data_dir, inside

    root = data_dir(settings)
    # SQLite would create or write the file where a planted symlink points, and the files it
    # keeps beside the database too: refused, for the daemon and the CLI alike.
    for suffix in ("", "-wal", "-shm", "-journal"):
        inside(root, root / f"{DB_FILENAME}{suffix}")
    return f"sqlite:///{root / DB_FILENAME}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database or "")


def create(url: str) -> Engine:
    """An engine for ``url``, every connection configured as described above."""
    if make_url(url).get_backend_name() == "postgresql":
        engine = create_engine(url, pool_pre_ping=True)
        event.listen(engine, "begin", _begin_postgresql)
        return engine
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
    return engine


def writer(engine: Engine) -> Engine:
    """The same engine (same pool) whose transactions are writers: ``BEGIN IMMEDIATE`` on
    SQLite, the advisory lock :data:`WRITE_LOCK_KEY` on PostgreSQL."""
    return engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})


@dataclass(frozen=True)
class Prepared:
    """A statement compiled once for one engine's driver and run on the driver's own cursor.

    For the few statements of every turn: SQLAlchemy's work per execution (cache key,
    parameter and type processing, result set-up, events) costs more than SQLite running
    them. They run inside a transaction the caller has begun through SQLAlchemy (``BEGIN
    IMMEDIATE``, commit and rollback stay its own), with values already in stored form
    (timestamps :func:`~assistant.store.schema.format_time`, JSON encoded); driver errors
    leave as SQLAlchemy's :class:`~sqlalchemy.exc.DBAPIError`, like every other statement's.
    Statement events and echo logging do not see them.
    """

    sql: str
    names: tuple[str, ...] | None  # the order of a positional driver's parameters

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...] | Mapping[str, Any]:
        return values if self.names is None else tuple(values[n] for n in self.names)

    def rows(self, conn: Connection, **values: Any) -> Sequence[Any]:
        """Run once; the rows it returned (a SELECT's, or RETURNING's), as plain tuples."""
        return self._execute(conn, self.args(values), lambda cursor: cursor.fetchall())

    def run(self, conn: Connection, **values: Any) -> int:
        """Run once; how many rows it changed."""
        return self._execute(conn, self.args(values), lambda cursor: cursor.rowcount)

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run once for each of ``rows``."""
        params = [self.args(values) for values in rows]
        return self._execute(conn, params, lambda cursor: cursor.rowcount, many=True)

    def _execute(
        self, conn: Connection, params: Any, read: Callable[[DBAPICursor], _T], *,
        many: bool = False,
    ) -> _T:
        dbapi_error = conn.dialect.loaded_dbapi.Error
        cursor = conn.connection.cursor()
        try:
            if many:
                cursor.executemany(self.sql, params)
            else:
                cursor.execute(self.sql, params)
            return read(cursor)
        except dbapi_error as error:
            raise exc.DBAPIError.instance(self.sql, params, error, dbapi_error) from error
        finally:
            cursor.close()


def prepare(engine: Engine, sql: str) -> Prepared:
    """``sql`` with ``:name`` parameters, in the paramstyle of ``engine``'s driver."""
    compiled = text(sql).compile(dialect=engine.dialect)
    names = compiled.positiontup
    return Prepared(str(compiled), None if names is None else tuple(names))


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # None: pysqlite never emits BEGIN on its own; _begin_sqlite does, for reads and writes.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    finally:
        cursor.close()


def _begin_sqlite(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


def _begin_postgresql(conn: Connection) -> None:
    # psycopg has begun the transaction; the lock is released by its commit or rollback.
    if _BEGIN_OPTION in conn.get_execution_options():
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")


def check(engine: Engine) -> None:
    """Assert the connection settings and run ``quick_check``; StorageError when either fails."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        found = {
            "journal_mode": str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower(),
            "synchronous": conn.exec_driver_sql("PRAGMA synchronous").scalar(),
            "foreign_keys": conn.exec_driver_sql("PRAGMA foreign_keys").scalar(),
            "busy_timeout": conn.exec_driver_sql("PRAGMA busy_timeout").scalar(),
        }
        problems = compare_pragmas(found)
        if problems:
            raise StorageError(
                "The conversation store is not configured safely: " + "; ".join(problems) + "."
            )
        rows = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
    if rows != ["ok"]:
        raise corrupt_error(engine.url.database or "", "; ".join(str(r) for r in rows[:5]))


def compare_pragmas(found: dict[str, Any]) -> list[str]:
    problems = []
    if found["journal_mode"] != "wal":
        problems.append(f"journal_mode is {found['journal_mode']}, not wal")
    if found["synchronous"] != 2:
        problems.append(f"synchronous is {found['synchronous']}, not FULL (2)")
    if found["foreign_keys"] != 1:
        problems.append("foreign_keys is off")
    if int(found["busy_timeout"] or 0) < 5000:
        problems.append(f"busy_timeout is {found['busy_timeout']} ms, below 5000")
    return problems


def checkpoint(engine: Engine) -> tuple[int, int, int] | None:
    """``wal_checkpoint(TRUNCATE)``: copy the WAL into the database and empty it.

    Returns SQLite's (busy, wal pages, checkpointed pages); busy is 1 when a reader kept the
    WAL from being emptied this time, which is harmless.
    """
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as conn:
        conn.commit()  # no transaction may be open around a checkpoint
        row = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    return int(row[0]), int(row[1]), int(row[2])


def sqlite_code(error: BaseException) -> int | None:
    """The primary SQLite result code behind a (possibly wrapped) driver error."""
    orig = error.orig if isinstance(error, exc.DBAPIError) else error
    code = getattr(orig, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_corruption(error: BaseException) -> bool:
    return sqlite_code(error) in _CORRUPT


def postgresql_unavailable(error: exc.DBAPIError) -> str | None:
    """Why PostgreSQL cannot serve now (server down, restarting, out of connections…), or
    None when the error is of another kind."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is None:  # no answer from a server: refused, unreachable, dropped
        if error.connection_invalidated or isinstance(error, exc.OperationalError):
            return _PG_UNAVAILABLE["08"]
        return None
    if sqlstate == "57014":  # a statement cancelled (the search budget), not the server
        return None
    return _PG_UNAVAILABLE.get(sqlstate) or _PG_UNAVAILABLE.get(str(sqlstate)[:2])


def translate(error: exc.DBAPIError, where: str) -> StorageError:
    """The domain error for a driver error: unavailable (retry later) or a plain failure."""
    code = sqlite_code(error)
    detail = str(error.orig) if error.orig is not None else str(error)
    if error.orig is not None and type(error.orig).__module__.startswith("psycopg"):
        reason = postgresql_unavailable(error)
        if reason is not None:
            return StorageUnavailable(
                f"The conversation store is unavailable: {reason} ({detail.strip()}).",
                "Check that the PostgreSQL server of [store] url is running and reachable; "
                "the assistant reconnects on its own once it is.")
        return StorageError(f"The conversation store failed: {detail.strip()}.")
    if code in _UNAVAILABLE:
        return StorageUnavailable(
            f"The conversation store is unavailable: {_UNAVAILABLE[code]} ({detail}).",
            "Free disk space or fix the permissions of the data directory; "
            "the assistant recovers on its own once the database can be written again.",
        )
    if code in _CORRUPT:
        return corrupt_error(where, detail)
    return StorageError(f"The conversation store failed: {detail}.")


def corrupt_error(path: str, detail: str) -> StorageError:
    return StorageError(
        f"The conversation database {path} is damaged ({detail}). It has been left untouched "
        "and nothing will be written to it.",
        f"Stop the assistant, move the file aside (mv {path} {path}.damaged) and start again "
        f"with a fresh database; to salvage its conversations, run "
        f"`sqlite3 {path}.damaged .recover | sqlite3 {path}` first.",
    )


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """Turn driver errors raised inside the block into domain errors."""
    try:
        yield
    except exc.DBAPIError as error:
        raise translate(error, where) from error


def apply_sql(conn: Connection, script: str) -> None:
    """Run a script of ``;``-terminated statements (trigger bodies kept whole)."""
    for statement in split_statements(script):
        conn.exec_driver_sql(statement)


def split_statements(script: str) -> list[str]:
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
