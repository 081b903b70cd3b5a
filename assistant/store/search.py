"""Full-text search over messages: FTS5 with bm25 ranking and snippets on SQLite, tsvector
with ``ts_rank_cd`` and ``ts_headline`` on PostgreSQL (:mod:`.postgres_search`). Called by
:class:`~assistant.store.repository.Store` on its own connection.

A query with Chinese, Japanese or Korean in it searches the trigram index of the messages
holding such text instead (substrings; see :mod:`assistant.store.cjk`), its snippets cut here.

A query's cost grows with the square of its terms (each ``word*`` expands to every word it
begins), so the API and the CLI cap its length and terms (:func:`check_query`, ``[search]``),
and run it within a :class:`Budget`: SQLite (its progress handler) and PostgreSQL
(``statement_timeout`` and a cancel request) give up when the time is spent or the client has
gone. Document keyword search (:mod:`assistant.store.documents`) runs within one too.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from assistant.errors import RequestError
from assistant.store import cjk
from assistant.store.records import SearchHit
from assistant.store.schema import parse_time

SNIPPET_TOKENS = 12
# bm25 costs time per matching row, and a word in most messages ranks them all alike anyway:
# a query matching more than this many messages ranks only the newest this many.
RANK_WINDOW = 5000
_WORD = re.compile(r"\w+\*?", re.UNICODE)
_WORDS_FTS = "messages_fts"  # unicode61: words
_CJK_FTS = "messages_cjk"  # trigram: substrings of the messages holding CJK text

# Three short steps rather than one query: where the newest RANK_WINDOW matches begin, the best
# `limit` of those by bm25, then snippets and titles for just those rows (snippet() is costly and
# SQLite would otherwise compute it for every match before sorting).
# CROSS JOIN pins the full-text table as the outer loop: SQLite never reorders it, and any
# other order would re-run the MATCH once per message.
_FILTER_JOIN = "CROSS JOIN messages AS f ON f.seq = {fts}.rowid"
_FILTER = """AND (f.skill = :skill OR EXISTS (
    SELECT 1 FROM messages AS r WHERE r.parent_id = f.id AND r.skill = :skill))"""
# Every search sees one owner's conversations (see Store.owned_by).
_OWNER = """AND EXISTS (
    SELECT 1 FROM conversations AS o WHERE o.id = f.conversation_id AND o.owner = :owner)"""
_WINDOW = """
SELECT {fts}.rowid FROM {fts}
WHERE {fts} MATCH :query
ORDER BY {fts}.rowid DESC LIMIT 1 OFFSET :offset
"""
_RANKED = """
SELECT {fts}.rowid AS seq, bm25({fts}) AS score FROM {fts} {join}
WHERE {fts} MATCH :query AND {fts}.rowid >= :floor {filter}
ORDER BY score LIMIT :limit
"""
_DETAILS = """
SELECT messages_fts.rowid AS seq, m.id, m.conversation_id, c.title, m.role, m.skill,
       m.created, snippet(messages_fts, 0, :open, :close, '…', :tokens) AS snip
FROM messages_fts
CROSS JOIN messages AS m ON m.seq = messages_fts.rowid
JOIN conversations AS c ON c.id = m.conversation_id
WHERE messages_fts MATCH :query AND messages_fts.rowid IN ({seqs})
"""
# CJK terms too short for the trigram index: substrings, on the rows the phrases matched.
_SHORT = "AND f.content LIKE :s{i} ESCAPE '\\'"
# A query of short CJK terms only has no index to narrow it: the newest RANK_WINDOW messages
# holding every term, ranked by how often they hold them (saturating, as bm25 does).
_SHORT_ONLY = """
SELECT seq, -({score}) AS score FROM (
    SELECT f.seq, f.content FROM messages AS f WHERE {likes} {filter}
    ORDER BY f.seq DESC LIMIT :window
)
ORDER BY score, seq DESC LIMIT :limit
"""
_TF = "(length(content) - length(replace(content, :t{i}, ''))) / length(:t{i})"
_CJK_DETAILS = """
SELECT m.seq, m.id, m.conversation_id, c.title, m.role, m.skill, m.created, m.content
FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE m.seq IN ({seqs})
"""

# SQLite asks whether to stop every this many virtual-machine instructions (about 1 ms).
PROGRESS_STEPS = 10_000


class Interrupted(Exception):
    """The database stopped a statement because ``stop()`` turned true."""


def check_query(query: str, *, max_chars: int, max_terms: int, name: str = "q") -> None:
    """A 400 naming ``name`` (the query's parameter or argument) and the limit when ``query``
    is longer than ``max_chars`` characters or has more than ``max_terms`` words."""
    if len(query) > max_chars:
        raise RequestError(
            f"{name}: {len(query)} characters, more than the {max_chars} a search may have "
            "(search.max_query_chars); search for fewer words", param=name)
    terms = len(_WORD.findall(query))
    if terms > max_terms:
        raise RequestError(
            f"{name}: {terms} words, more than the {max_terms} a search may have "
            "(search.max_terms); every word must match, so a few distinctive ones find as much",
            param=name)


@dataclass(frozen=True)
class Budget:
    """When a search must stop: ``timeout`` seconds after ``started`` (a ``time.monotonic()``
    value), or once ``cancel`` is set (its client has gone)."""

    timeout: float | None = None
    started: float = field(default_factory=time.monotonic)
    cancel: threading.Event | None = None

    def spent(self) -> bool:
        return bool((self.cancel is not None and self.cancel.is_set())
                    or (self.timeout is not None
                        and time.monotonic() - self.started > self.timeout))

    def error(self, name: str = "q") -> RequestError:
        """What a search this budget stopped answers: 499 when its client left, else 400
        ``search_timeout`` naming ``name``."""
        if self.cancel is not None and self.cancel.is_set():
            return RequestError("search: cancelled", status=499, code="client_disconnected",
                                param=name)
        return RequestError(
            f"search: stopped after {self.timeout:g} s, its time budget (search.timeout); "
            "search for fewer words, or longer ones than a short prefix*",
            code="search_timeout", param=name)


@contextlib.contextmanager
def within(conn: Connection, budget: Budget | None, name: str = "q") -> Iterator[None]:
    """Statements on ``conn`` inside this block stop once ``budget`` is spent, with its
    :meth:`Budget.error` (no budget: they run to their end)."""
    if budget is None:
        yield
        return
    if conn.dialect.name == "postgresql":
        from assistant.store.postgres_search import Stopped, bounded

        try:
            with bounded(conn, budget):
                yield
        except Stopped:
            raise budget.error(name) from None
        return
    try:
        with stoppable(conn, budget.spent):
            yield
    except Interrupted:
        raise budget.error(name) from None


@contextlib.contextmanager
def stoppable(conn: Connection, stop: Callable[[], bool]) -> Iterator[None]:
    """Statements on ``conn`` inside this block end with :class:`Interrupted` once ``stop()``
    is true (SQLite's progress handler; other databases run to the end)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw: Any = conn.connection.driver_connection
    raw.set_progress_handler(lambda: 1 if stop() else 0, PROGRESS_STEPS)
    try:
        yield
    except sa_exc.OperationalError as error:
        if "interrupted" in str(error.orig) and stop():
            raise Interrupted from None
        raise
    finally:
        raw.set_progress_handler(None, 0)  # the connection goes back to the pool


def fts_query(user_text: str) -> str:
    """Words to an FTS5 query: each word quoted (so no syntax can break it), all required,
    a trailing ``*`` kept as a prefix search."""
    terms = []
    for word in _WORD.findall(user_text):
        prefix = word.endswith("*")
        word = word.rstrip("*")
        if word:
            terms.append(f'"{word}"' + ("*" if prefix else ""))
    return " ".join(terms)


def run_search(
    conn: Connection, query: str, *, skill: str | None, limit: int,
    highlight: tuple[str, str], owner: int = 0,
) -> list[SearchHit]:
    """The messages of ``owner``'s conversations matching ``query`` (see Store.search)."""
    if conn.dialect.name == "postgresql":
        from assistant.store.postgres_search import search_messages

        return search_messages(conn, _WORD.findall(query), cjk.has_cjk(query), skill=skill,
                               limit=limit, window=RANK_WINDOW, highlight=highlight,
                               owner=owner)
    if cjk.has_cjk(query):
        return _cjk_search(conn, query, skill=skill, limit=limit, highlight=highlight,
                           owner=owner)
    hits = _word_search(conn, query, skill=skill, limit=limit, highlight=highlight,
                        owner=owner)
    if len(hits) < limit and any(len(w.rstrip("*")) >= cjk.SHORTEST_PHRASE
                                 for w in _WORD.findall(query)):
        # A word written against CJK text ("用Python写") is inside one unicode61 token: the
        # trigram index finds it there. Such hits come after the word index's, ranked so.
        found = {h.message_id for h in hits}
        more = [h for h in _cjk_search(conn, query, skill=skill, limit=limit,
                                       highlight=highlight, owner=owner)
                if h.message_id not in found]
        if more:
            shift = (hits[-1].rank if hits else 0.0) - more[0].rank
            hits += [replace(h, rank=h.rank + shift) for h in more[: limit - len(hits)]]
    return hits


def _word_search(
    conn: Connection, query: str, *, skill: str | None, limit: int,
    highlight: tuple[str, str], owner: int,
) -> list[SearchHit]:
    """The unicode61 index: whole words (``word*`` a prefix), bm25, FTS5's snippets."""
    fts = fts_query(query)
    if not fts:
        return []
    params: dict[str, Any] = {"query": fts, "skill": skill, "owner": owner,
                              "limit": min(max(1, limit), RANK_WINDOW), "offset": RANK_WINDOW - 1}
    ranked = _rank(conn, _WORDS_FTS, params, _OWNER + (_FILTER if skill else ""))
    if not ranked:
        return []
    params |= {"open": highlight[0], "close": highlight[1], "tokens": SNIPPET_TOKENS}
    seqs = ", ".join(str(int(seq)) for seq in ranked)
    rows = conn.execute(text(_DETAILS.format(seqs=seqs)), params).all()
    hits = [
        SearchHit(
            conversation_id=r.conversation_id, conversation_title=r.title, message_id=r.id,
            role=r.role, skill=r.skill, created=parse_time(r.created), snippet=r.snip,
            rank=ranked[r.seq],
        )
        for r in rows
    ]
    return sorted(hits, key=lambda h: h.rank)


def _rank(conn: Connection, fts: str, params: dict[str, Any], filter_sql: str) -> dict[int, float]:
    """seq → bm25 of the best ``params["limit"]`` of the newest RANK_WINDOW matches of
    ``params["query"]`` in the table ``fts`` that pass ``filter_sql`` (on ``f``, the message)."""
    parts = {"fts": fts, "join": _FILTER_JOIN.format(fts=fts) if filter_sql else "",
             "filter": filter_sql}
    ranking = text(_RANKED.format(**parts))
    # The window is found without the filter (checking it row by row is the slow part);
    # if too few of the window's matches pass it, the filter looks at all of them.
    params["floor"] = conn.execute(text(_WINDOW.format(fts=fts)), params).scalar() or 0
    ranked = {row.seq: float(row.score) for row in conn.execute(ranking, params)}
    if len(ranked) < params["limit"] and params["floor"]:
        params["floor"] = 0
        ranked = {row.seq: float(row.score) for row in conn.execute(ranking, params)}
    return ranked


def _cjk_search(
    conn: Connection, query: str, *, skill: str | None, limit: int,
    highlight: tuple[str, str], owner: int,
) -> list[SearchHit]:
    """Every term a substring: phrases through the trigram index, short terms by ``LIKE``."""
    terms = cjk.split_terms([w.rstrip("*") for w in _WORD.findall(query)])
    params: dict[str, Any] = {"skill": skill, "owner": owner,
                              "limit": min(max(1, limit), RANK_WINDOW),
                              "offset": RANK_WINDOW - 1, "window": RANK_WINDOW}
    for i, term in enumerate(terms.short):
        params[f"s{i}"] = cjk.like_pattern(term)
        params[f"t{i}"] = term
    shorts = [_SHORT.format(i=i) for i in range(len(terms.short))]
    skill_sql = _OWNER + (_FILTER if skill else "")
    if terms.phrases:
        params["query"] = terms.match()
        ranked = _rank(conn, _CJK_FTS, params, " ".join([*shorts, skill_sql]).strip())
    elif terms.short:
        score = " + ".join(f"1.0 * {_TF.format(i=i)} / ({_TF.format(i=i)} + 1.2)"
                           for i in range(len(terms.short)))
        likes = " ".join(shorts).removeprefix("AND ")
        sql = _SHORT_ONLY.format(score=score, likes=likes, filter=skill_sql)
        ranked = {row.seq: float(row.score) for row in conn.execute(text(sql), params)}
    else:
        return []
    if not ranked:
        return []
    seqs = ", ".join(str(int(seq)) for seq in ranked)
    rows = conn.execute(text(_CJK_DETAILS.format(seqs=seqs))).all()
    hits = [
        SearchHit(
            conversation_id=r.conversation_id, conversation_title=r.title, message_id=r.id,
            role=r.role, skill=r.skill, created=parse_time(r.created),
            snippet=cjk.snippet(r.content, terms.all(), highlight), rank=ranked[r.seq],
        )
        for r in rows
    ]
    return sorted(hits, key=lambda h: (h.rank, -h.created.timestamp()))
