"""Issue 21, finding 5, inside the skills: document keyword search capped, timed, cancelled.

``qa`` searches the documents with the user's question, and ``summarize`` with a whole turn,
however long. The keyword half ORs every distinct word of it: on main (8fef38d) a question of
5,000 distinct words took 2.6 s over 4,000 chunks, and 2,000 one-character CJK words made the
SQL too deep for SQLite (``StorageError: Expression tree is too large``), failing the turn.
Nothing stopped the statement when the turn was cancelled. Now only the first
``search.max_query_chars`` characters and ``search.max_terms`` distinct terms are searched for,
the database stops the search after ``search.timeout`` (the vector half then answers alone),
and a cancelled turn stops it: on SQLite and on PostgreSQL, where the server runs it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from assistant.config import SearchSettings, load_settings
from assistant.documents.search import HybridSearch
from assistant.store import Store
from assistant.store.documents import NewChunk
from assistant.testing import hashed_vector, in_process_daemon
from tests.databases import Database

HAN = [chr(0x4E00 + i) for i in range(3000)]
# 32 one-character CJK words: no index narrows them, each is a LIKE over every chunk's text
# (about 0.8 s over _fill's chunks here): within the caps, and slow.
SLOW = " ".join(HAN[:32])


async def fake_embed(texts: list[str]) -> list[list[float]]:
    return [hashed_vector(t) for t in texts]


def _vector(text: str) -> bytes:
    return np.asarray(hashed_vector(text), dtype=np.float32).tobytes()


def _fill(store: Store, documents: int = 5, chunks: int = 300) -> None:
    """Chunks of 800 random Han characters, and one English chunk about warranties."""
    rng = random.Random(1)
    for d in range(documents):
        texts = ["".join(rng.choice(HAN) for _ in range(800)) for _ in range(chunks)]
        store.documents.add(f"/docs/{d}.md", f"doc {d}", f"{d:064d}",
                            [NewChunk(i, f"p{i}", t, _vector(t)) for i, t in enumerate(texts)],
                            1)
    warranty = "The warranty lasts two years from the date of purchase."
    store.documents.add("/docs/warranty.md", "warranty", "w" * 64,
                        [NewChunk(0, "p1", warranty, _vector(warranty))], 1)


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = Store.open(database.fresh("docs"), check=False)
    _fill(s)
    yield s
    s.close()


def _cpu_s() -> float:
    return time.process_time()


@pytest.mark.asyncio
async def test_a_long_question_searches_only_its_first_terms(store: Store) -> None:
    words = " ".join(f"w{i}" for i in range(10_000))  # 10,000 distinct words, 59 KB
    search = HybridSearch(store, fake_embed, min_similarity=-1.0)
    await search.search("warranty", 3)  # loads the vectors and the sentence splitter
    started = time.perf_counter()
    hits = await search.search(f"warranty years {words}", 3)
    took = time.perf_counter() - started
    assert took < 1.0, f"a 10,000-word question took {took:.1f} s"
    assert hits and hits[0]["document"] == "warranty", hits  # its first words still count
    # The terms past the cap are not searched for: only the first 32 distinct ones are.
    assert store.documents.keyword_search("w1 w2 warranty", 5, max_terms=2) == []
    assert store.documents.keyword_search("w1 warranty", 5, max_terms=2) != []


@pytest.mark.asyncio
async def test_many_short_cjk_words_no_longer_fail_the_search(store: Store) -> None:
    """2,000 one-character words: on main, SQL too deep for SQLite, a StorageError."""
    search = HybridSearch(store, fake_embed, min_similarity=-1.0)
    started = time.perf_counter()
    hits = await search.search(" ".join(HAN[:2000]), 3)
    assert hits
    assert time.perf_counter() - started < SearchSettings().timeout + 1.0


@pytest.mark.asyncio
async def test_a_keyword_search_past_its_time_budget_leaves_the_vector_hits(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    search = HybridSearch(store, fake_embed, min_similarity=-1.0,
                          limits=SearchSettings(timeout=0.1))
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="assistant.documents"):
        hits = await search.search(SLOW, 3)
    took = time.perf_counter() - started
    assert took < 0.6, f"the search ran {took:.1f} s past a 0.1 s budget"
    assert hits and all(hit["keyword_rank"] is None for hit in hits), hits
    assert "ran out of time" in caplog.text


@pytest.mark.asyncio
async def test_a_cancelled_search_stops_its_sql(store: Store) -> None:
    search = HybridSearch(store, fake_embed, limits=SearchSettings(timeout=60))
    task = asyncio.create_task(search.search(SLOW, 3))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)  # the statement's next progress check
    if store.engine.dialect.name == "postgresql":  # the server runs it: is it still?
        with store.engine.connect() as conn:
            running = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND datname = current_database() AND pid <> pg_backend_pid()")).scalar()
        assert running == 0, "the search's statement ran on after its turn was cancelled"
        return
    before = _cpu_s()
    await asyncio.sleep(1.0)
    burnt = _cpu_s() - before
    assert burnt < 0.2, f"the search used {burnt:.1f} s of CPU after its turn was cancelled"


@pytest.mark.asyncio
async def test_the_daemon_bounds_a_qa_turns_search_by_its_search_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The qa skill's search is the daemon's HybridSearch, bounded by ``[search]``. On main
    this turn ended in an error event (the store failed: expression tree too large)."""
    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")
    monkeypatch.setenv("ASSISTANT_SEARCH__TIMEOUT", "0.1")
    async with in_process_daemon(load_settings()) as daemon:
        assert daemon.services.store is not None
        await asyncio.to_thread(_fill, daemon.services.store)
        started = time.perf_counter()
        events = await daemon.events("/api/turns", {"text": "/qa " + " ".join(HAN[:2000])})
        took = time.perf_counter() - started
    assert events[-1]["type"] == "done" and events[-1]["status"] == "complete", events[-1]
    assert took < 2.0, f"the qa turn took {took:.1f} s with a 0.1 s search budget"
