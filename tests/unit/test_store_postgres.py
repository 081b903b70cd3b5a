"""What only PostgreSQL has to show: two daemons sharing one database, a search stopped by its
budget on the server, documents' words read in their language, an unreachable server.

Every other store test runs on PostgreSQL too (tests/databases.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from assistant.config import load_settings
from assistant.errors import RequestError, StorageUnavailable
from assistant.store import Store
from assistant.store.documents import NewChunk
from assistant.store.search import Budget, within
from tests.databases import Database

postgresql_only = pytest.mark.parametrize("database", ["postgresql"], indirect=True)
TURNS = 15  # per writer


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = Store.open(load_settings())
    yield s
    s.close()


@postgresql_only
def test_two_daemons_on_one_database_lose_no_update(database: Database) -> None:
    """Two stores (two daemons, as on two machines: their own engines and pools), each with
    two threads taking turns in the same conversation at once. Every turn continues from the
    one before it, whichever daemon wrote that: one unbroken path, no turn on a side branch."""
    url = database.fresh("shared")
    opened: list[Store] = []
    openers = [threading.Thread(target=lambda: opened.append(Store.open(url)))
               for _ in range(2)]
    for t in openers:  # both migrate a blank database at once: it is migrated once
        t.start()
    for t in openers:
        t.join()
    first, second = opened
    conversation = first.begin_turn(None, "start").conversation_id
    errors: list[BaseException] = []

    def talk(store: Store, name: str) -> None:
        try:
            for i in range(TURNS):
                turn = store.begin_turn(conversation, f"{name} {i}")
                store.save_partial(turn.assistant_message.id, "thinking")
                store.finalize(turn.assistant_message.id, status="complete",
                               content=f"answer to {name} {i}")
        except BaseException as error:
            errors.append(error)

    writers = [threading.Thread(target=talk, args=(s, f"{n}{k}"))
               for n, s in (("a", first), ("b", second)) for k in range(2)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    assert errors == []
    conv = second.get_conversation(conversation)
    path = conv.active_path
    assert len(conv.messages) == len(path) == 2 + 4 * TURNS * 2  # nothing off the path
    assert all(len(conv.children(m.id)) == 1 for m in path[:-1])
    assert {m.content for m in path if m.role == "user"} == {"start"} | {
        f"{n}{k} {i}" for n in "ab" for k in range(2) for i in range(TURNS)}
    with first.engine.connect() as conn:
        versions = conn.execute(text("SELECT version FROM schema_version")).scalars().all()
    assert sorted(versions) == list(range(1, len(versions) + 1))
    first.close()
    second.close()


@postgresql_only
def test_a_search_past_its_budget_is_cancelled_on_the_server(store: Store) -> None:
    started = time.monotonic()
    with pytest.raises(RequestError) as caught, store.engine.connect() as conn, \
            within(conn, Budget(timeout=0.3)):
        conn.execute(text("SELECT pg_sleep(5)"))
    assert caught.value.code == "search_timeout" and time.monotonic() - started < 2
    # The client leaving stops it too, with a cancel request to the server.
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(RequestError) as caught, store.engine.connect() as conn, \
            within(conn, Budget(timeout=30, cancel=cancel)):
        conn.execute(text("SELECT pg_sleep(5)"))
    assert caught.value.status == 499 and time.monotonic() - started < 2
    with store.engine.connect() as conn:  # the pool's connections serve the next caller
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
    assert store.search("anything") == []


def test_documents_words_are_read_in_their_language(store: Store) -> None:
    """PostgreSQL stems a document's words by its language (Snowball); SQLite's FTS5 matches
    words as they are written. A document of no known language is 'simple' on both."""
    chunks = [NewChunk(0, "line 1", "The warranty covers the batteries of the cars.", None)]
    english = store.documents.add("/en.md", "en", "1" * 64, chunks, 1, language="en")
    french = store.documents.add("/fr.md", "fr", "2" * 64, [
        NewChunk(0, "line 1", "Les chevaux mangent des pommes.", None)], 1, language="fr")
    plain = store.documents.add("/und.md", "und", "3" * 64, [
        NewChunk(0, "line 1", "Batteries included.", None)], 1)
    assert (english.language, french.language, plain.language) == ("en", "fr", None)
    assert [d.language for d in store.documents.all()] == ["en", "fr", None]

    def found(question: str) -> set[str]:
        seqs = [seq for seq, _ in store.documents.keyword_search(question)]
        return {c.path for c in store.documents.chunks(seqs)}

    assert found("batteries") == {"/en.md", "/und.md"}  # as written: both
    if store.engine.dialect.name == "postgresql":
        assert found("battery car") == {"/en.md"}  # stemmed: batteri, car
        assert found("cheval pomme") == {"/fr.md"}
    else:
        assert found("battery car") == set() and found("cheval pomme") == set()


@postgresql_only
def test_an_unreachable_server_is_unavailable(store: Store, database: Database) -> None:
    with pytest.raises(StorageUnavailable, match="cannot be reached") as caught:
        Store.open("postgresql+psycopg://postgres@/nothing?host=/nonexistent")
    assert "[store] url" in (caught.value.hint or "")
