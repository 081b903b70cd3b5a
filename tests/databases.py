"""The databases the store's tests run on: SQLite, and a real PostgreSQL server.

The server is ``pgserver``'s (a dev dependency: PostgreSQL 16's own binaries in a registry
package), started once per test session in a temp dir and reached over its Unix socket; as
root it runs as a ``pgserver`` system user it makes. Each test gets a database of its own
(``CREATE DATABASE`` from ``template0``: about 40 ms), dropped after it.

A store test takes the ``database`` fixture (directly, or through its ``store`` fixture) and
so runs twice, ``[sqlite]`` and ``[postgresql]``: on PostgreSQL ``ASSISTANT_STORE__URL`` points
at the test's database, so ``Store.open(load_settings())`` opens it. A test of something only
SQLite has (its file, its pragmas, FTS5's tables) is marked :data:`sqlite_only`.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Overrides the fixture's parameters: the test runs on SQLite alone.
sqlite_only = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
_names = itertools.count()


@dataclass(frozen=True)
class Database:
    """The database a test runs on: ``dialect``, and ``fresh(name)``, the URL of another,
    empty database of the same kind (an import's target, say)."""

    dialect: str
    fresh: Callable[[str], str]


class PostgresServer:
    """The session's server: ``uri(name)``, a database's SQLAlchemy URL, and :meth:`execute`
    on an admin connection to the server's own database.

    The admin connection is made again when the server has dropped it, and a server that has
    stopped is started again (same data directory), saying what its log ended with: in full
    runs it once stopped mid-run (its data directory made unreachable, see :func:`postgres`)
    and every PostgreSQL test after it failed."""

    def __init__(self, start: Callable[[], Any]) -> None:
        self._start = start
        self.server = start()
        self._admin: Any = None

    def uri(self, name: str) -> str:
        return str(self.server.get_uri(name)).replace("postgresql://", "postgresql+psycopg://",
                                                      1)

    def execute(self, sql: str) -> None:
        import psycopg

        for attempt in range(3):
            try:
                if self._admin is None or self._admin.closed or self._admin.broken:
                    self._admin = psycopg.connect(self.server.get_uri("postgres"),
                                                  autocommit=True)
                self._admin.execute(sql)
                return
            except psycopg.OperationalError as error:
                if attempt == 2:
                    raise
                warnings.warn(f"PostgreSQL test server: {error}; connecting again",
                              stacklevel=2)
                self._admin = None
                if attempt:
                    self.server = self._start()

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()


def _running(handle: Any) -> bool:
    """Whether the server ``handle`` started still runs (a zombie does not)."""
    import psutil

    try:
        process = handle.get_postmaster_info().process
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, AssertionError):
        return False


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session (started on first use)."""
    try:
        with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR, /tmp used
            warnings.simplefilter("ignore")
            import pgserver
        import psycopg  # noqa: F401
    except ImportError as error:  # pragma: no cover - the dev dependencies hold both
        raise RuntimeError(f"The PostgreSQL store tests need the dev dependencies "
                           f"(make install): {error}") from error
    # Not under pytest's temp root: the server runs as another user (``pgserver``, as root),
    # which needs to pass through every parent, and a pytest started inside this run (the
    # plugin tests run their skeleton's tests) takes the others' permissions off that root
    # again (0700); the server then lost its data directory mid-run ("could not open file
    # pg_control: Permission denied") and every PostgreSQL test after it failed.
    root = Path(tempfile.mkdtemp(prefix="assistant-pg-"))

    from pgserver.postgres_server import PostgresServer as Handle

    def start() -> Any:
        data = (root / "data").resolve()
        known = Handle._instances.get(data)
        if known is not None and not _running(known):
            log = data / "log"  # why it stopped, for whoever reads the run's warnings
            warnings.warn("PostgreSQL test server stopped; its log ends: "
                          + (log.read_text(errors="replace")[-1500:] if log.exists() else "-"),
                          stacklevel=2)
            del Handle._instances[data]  # else get_server returns it, dead
            atexit.unregister(known._cleanup)  # the new one's cleanup stops and deletes
            # Its lock files name a pid that may still exist (a zombie nobody reaped):
            # PostgreSQL would take it for a server still running and refuse to start.
            for lock in ("postmaster.pid", ".s.PGSQL.5432.lock", ".s.PGSQL.5432"):
                (data / lock).unlink(missing_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pgserver.get_server(data, cleanup_mode="delete")

    server = PostgresServer(start)
    try:
        yield server
    finally:
        server.close()
        server.server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch, isolated_env: dict[str, str]) -> Iterator[Database]:
    """Each store test on SQLite (the data dir's file) and on PostgreSQL."""
    if request.param == "sqlite":
        yield Database("sqlite", lambda name: f"sqlite:///{tmp_path / name}.sqlite3")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    made: list[str] = []

    def fresh(_name: str) -> str:
        name = f"test_{next(_names)}"
        server.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
        made.append(name)
        return server.uri(name)

    monkeypatch.setenv("ASSISTANT_STORE__URL", fresh("main"))
    yield Database("postgresql", fresh)
    for name in made:
        server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
