"""Full-text search on PostgreSQL: message search and the documents' keyword search over the
generated ``tsv`` columns of migration 6 (GIN-indexed), and the time budget of a search.

Words are matched as FTS5 matches them on SQLite: folded (lower case, diacritics dropped, the
same :func:`fold` the column's ``assistant_fold`` applies), every word required (message
search) or any (documents), ``word*`` a prefix (``:*``). Messages are indexed with the
``simple`` configuration, as FTS5's unicode61 does for every language; chunks with their
document's language's (``assistant_ts_config``: a Snowball stemmer, else ``simple``), and a
question is matched in each configuration the stored documents use. Ranks are
``-ts_rank_cd`` (lower is better, like bm25); snippets are ``ts_headline``'s, with the same
highlight markers and ``…`` where the text was cut.

PostgreSQL has no segmenter for Chinese, Japanese or Korean (its parser keeps a run of them as
one word, as unicode61 does), nor, on a plain server, pg_trgm. A query with CJK in it matches
every term as a substring (``ILIKE``) of the newest :data:`~assistant.store.search.RANK_WINDOW`
messages holding CJK text, ranked by how often they hold the terms: SQLite's path for short
terms (:mod:`assistant.store.cjk`), used here for every term. A scan, so slower on a large
history than SQLite's trigram index; the search's time budget bounds it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from assistant.store import cjk
from assistant.store.records import SearchHit
from assistant.store.schema import parse_time

if TYPE_CHECKING:
    from assistant.store.search import Budget

CANCELLED = "57014"  # query_canceled: statement_timeout, or our cancel request
_POLL = 0.05  # seconds between checks of whether a running search must stop
_MARKS = re.compile(r"[\u0300-\u036f]")  # what assistant_fold drops after NFD
_CJK_CLASS = "[" + "".join(f"{lo}-{hi}" for lo, hi in cjk.RANGES) + "]"

_FILTER = """AND (f.skill = :skill OR EXISTS (
    SELECT 1 FROM messages AS r WHERE r.parent_id = f.id AND r.skill = :skill))"""
# Every search sees one owner's conversations (see Store.owned_by).
_OWNER = """AND EXISTS (
    SELECT 1 FROM conversations AS o WHERE o.id = f.conversation_id AND o.owner = :owner)"""
_WINDOW = """
SELECT f.seq FROM messages AS f WHERE f.tsv @@ to_tsquery('simple', :query)
ORDER BY f.seq DESC OFFSET :offset LIMIT 1
"""
_RANKED = """
SELECT f.seq, -ts_rank_cd(f.tsv, q.q, 1) AS score
FROM messages AS f, to_tsquery('simple', :query) AS q (q)
WHERE f.tsv @@ q.q AND f.seq >= :floor {filter}
ORDER BY score, f.seq DESC LIMIT :limit
"""
_DETAILS = """
SELECT m.seq, m.id, m.conversation_id, c.title, m.role, m.skill, m.created, m.content,
       ts_headline('simple', m.content, to_tsquery('simple', :query), :options) AS snip
FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE m.seq IN ({seqs})
"""
_TF = "(length({col}) - length(replace({col}, :t{i}, ''))) / length(:t{i})"
_SUBSTRINGS = """
SELECT seq, -({score}) AS score FROM (
    SELECT f.seq, f.content FROM messages AS f
    WHERE {likes} AND f.content ~ :cjk {filter}
    ORDER BY f.seq DESC LIMIT :window
) AS w
ORDER BY score, seq DESC LIMIT :limit
"""
_CJK_DETAILS = """
SELECT m.seq, m.id, m.conversation_id, c.title, m.role, m.skill, m.created, m.content
FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE m.seq IN ({seqs})
"""
_CONFIGS = ("SELECT DISTINCT assistant_ts_config(language)::text AS name FROM documents "
            "WHERE owner = :owner")
# A chunk is searched only by its document's owner.
_CHUNK_OWNER = "AND EXISTS (SELECT 1 FROM documents AS d WHERE d.id = k.document_id " \
    "AND d.owner = :owner)"
_CHUNK_WORDS = """
SELECT k.seq, ts_rank_cd(k.tsv, q.q, 1) AS score
FROM chunks AS k, ({queries}) AS q (q)
WHERE k.tsv @@ q.q {owner} ORDER BY score DESC, k.seq LIMIT :n
"""
_CHUNK_SUBSTRINGS = """
SELECT seq, {score} AS score FROM chunks AS k WHERE ({likes}) AND k.text ~ :cjk {owner}
ORDER BY score DESC, seq LIMIT :n
"""


class Stopped(Exception):
    """PostgreSQL cancelled a statement: the budget ran out or its client left."""


def fold(word: str) -> str:
    """``word`` as ``assistant_fold`` stores it: NFD with the combining marks dropped."""
    return _MARKS.sub("", unicodedata.normalize("NFD", word)).lower()


def tsquery(words: list[str], joiner: str) -> str:
    """``to_tsquery`` text for ``words`` (``\\w+`` with an optional ``*``): each quoted, so
    nothing in them is syntax, joined by ``joiner`` (``&`` all, ``|`` any)."""
    terms = []
    for word in words:
        prefix = word.endswith("*")
        word = fold(word.rstrip("*"))
        if word:
            quoted = "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"
            terms.append(quoted + (":*" if prefix else ""))
    return f" {joiner} ".join(terms)


@contextlib.contextmanager
def bounded(conn: Connection, budget: Budget) -> Iterator[None]:
    """Statements on ``conn`` in this block are cancelled once ``budget`` is spent (raising
    :class:`Stopped`): ``statement_timeout`` bounds each at what time is left, and a watcher
    sends PostgreSQL a cancel request when the client leaves or the time is up mid-block."""
    if budget.timeout is not None:
        left = budget.timeout - (time.monotonic() - budget.started)
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(left * 1000))}")
    raw: Any = conn.connection.driver_connection
    done, lock = threading.Event(), threading.Lock()

    def watch() -> None:
        while not done.wait(_POLL):
            with lock:
                if not done.is_set() and budget.spent():
                    raw.cancel_safe()

    watcher = threading.Thread(target=watch, name="search-budget", daemon=True)
    watcher.start()
    try:
        yield
    except sa_exc.DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == CANCELLED:
            raise Stopped from None
        raise
    finally:
        with lock:
            done.set()
        watcher.join()


# -- messages -----------------------------------------------------------------------------------


def search_messages(
    conn: Connection, words: list[str], cjk_query: bool, *, skill: str | None, limit: int,
    window: int, highlight: tuple[str, str], owner: int = 0,
) -> list[SearchHit]:
    """What :func:`assistant.store.search.run_search` finds, on PostgreSQL."""
    if cjk_query:
        return _substring_search(conn, words, skill=skill, limit=limit, window=window,
                                 highlight=highlight, owner=owner)
    hits = _word_search(conn, words, skill=skill, limit=limit, window=window,
                        highlight=highlight, owner=owner)
    if len(hits) < limit and any(len(w.rstrip("*")) >= cjk.SHORTEST_PHRASE for w in words):
        # A word written against CJK text ("用Python写") is inside one token: found as a
        # substring of the messages holding CJK, after the word matches, as on SQLite.
        found = {h.message_id for h in hits}
        more = [h for h in _substring_search(conn, words, skill=skill, limit=limit,
                                             window=window, highlight=highlight,
                                             owner=owner)
                if h.message_id not in found]
        if more:
            shift = (hits[-1].rank if hits else 0.0) - more[0].rank
            hits += [replace(h, rank=h.rank + shift) for h in more[: limit - len(hits)]]
    return hits


def _word_search(
    conn: Connection, words: list[str], *, skill: str | None, limit: int, window: int,
    highlight: tuple[str, str], owner: int,
) -> list[SearchHit]:
    query = tsquery(words, "&")
    if not query:
        return []
    params: dict[str, Any] = {"query": query, "skill": skill, "owner": owner,
                              "offset": window - 1,
                              "limit": min(max(1, limit), window)}
    ranking = text(_RANKED.format(filter=_OWNER + (_FILTER if skill else "")))
    # The newest `window` matches are ranked; if too few of them pass the skill filter,
    # every match is (as on SQLite).
    params["floor"] = conn.execute(text(_WINDOW), params).scalar() or 0
    ranked = {row.seq: float(row.score) for row in conn.execute(ranking, params)}
    if len(ranked) < params["limit"] and params["floor"]:
        params["floor"] = 0
        ranked = {row.seq: float(row.score) for row in conn.execute(ranking, params)}
    if not ranked:
        return []
    params["options"] = headline_options(highlight)
    seqs = ", ".join(str(int(seq)) for seq in ranked)
    rows = conn.execute(text(_DETAILS.format(seqs=seqs)), params).all()
    hits = [
        SearchHit(
            conversation_id=r.conversation_id, conversation_title=r.title, message_id=r.id,
            role=r.role, skill=r.skill, created=parse_time(r.created),
            snippet=with_ellipses(r.snip, r.content, highlight), rank=ranked[r.seq],
        )
        for r in rows
    ]
    return sorted(hits, key=lambda h: (h.rank, -h.created.timestamp()))


def _substring_search(
    conn: Connection, words: list[str], *, skill: str | None, limit: int, window: int,
    highlight: tuple[str, str], owner: int,
) -> list[SearchHit]:
    terms = cjk.split_terms([w.rstrip("*") for w in words]).all()
    if not terms:
        return []
    params: dict[str, Any] = {"skill": skill, "owner": owner,
                              "limit": min(max(1, limit), window),
                              "window": window, "cjk": _CJK_CLASS}
    for i, term in enumerate(terms):
        params[f"s{i}"], params[f"t{i}"] = cjk.like_pattern(term), term
    indexes = range(len(terms))
    sql = _SUBSTRINGS.format(
        score=_saturated("content", indexes),
        likes=" AND ".join(f"f.content ILIKE :s{i} ESCAPE '\\'" for i in indexes),
        filter=_OWNER + (_FILTER if skill else ""))
    ranked = {row.seq: float(row.score) for row in conn.execute(text(sql), params)}
    if not ranked:
        return []
    seqs = ", ".join(str(int(seq)) for seq in ranked)
    rows = conn.execute(text(_CJK_DETAILS.format(seqs=seqs))).all()
    hits = [
        SearchHit(
            conversation_id=r.conversation_id, conversation_title=r.title, message_id=r.id,
            role=r.role, skill=r.skill, created=parse_time(r.created),
            snippet=cjk.snippet(r.content, terms, highlight), rank=ranked[r.seq],
        )
        for r in rows
    ]
    return sorted(hits, key=lambda h: (h.rank, -h.created.timestamp()))


def _saturated(column: str, indexes: range) -> str:
    """How often ``column`` holds each term ``:t{i}``, saturating as bm25 does, summed."""
    return " + ".join(f"1.0 * {_TF.format(col=column, i=i)} / ({_TF.format(col=column, i=i)}"
                      " + 1.2)" for i in indexes)


def headline_options(highlight: tuple[str, str]) -> str:
    """``ts_headline`` options: one fragment of about a dozen words, ``highlight`` around
    matches (quoted, so any marker is taken as it is)."""
    from assistant.store.search import SNIPPET_TOKENS

    def quote(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    return (f"StartSel={quote(highlight[0])}, StopSel={quote(highlight[1])}, "
            f"MaxFragments=1, MaxWords={SNIPPET_TOKENS}, MinWords={SNIPPET_TOKENS // 2}, "
            "ShortWord=0")


def with_ellipses(headline: str, content: str, highlight: tuple[str, str]) -> str:
    """``headline`` with ``…`` where it begins after or ends before ``content`` does."""
    plain = headline.replace(highlight[0], "").replace(highlight[1], "").strip()
    at = content.find(plain)
    if not plain or at < 0:
        return headline
    before = "…" if content[:at].strip() else ""
    after = "…" if content[at + len(plain):].strip() else ""
    return before + headline.strip() + after


# -- document chunks ----------------------------------------------------------------------------


def chunk_words(conn: Connection, words: list[str], limit: int,
                owner: int = 0) -> list[tuple[int, float]]:
    """(chunk seq, ts_rank_cd) of the chunks holding any of ``words``, best first: the
    question is read in each text search configuration the stored documents use."""
    query = tsquery(words, "|")
    if not query:
        return []
    configs = sorted(r.name for r in conn.execute(text(_CONFIGS), {"owner": owner})) \
        or ["simple"]
    params: dict[str, Any] = {"query": query, "n": limit, "owner": owner}
    parts = []
    for i, name in enumerate(configs):
        params[f"c{i}"] = name
        parts.append(f"to_tsquery(CAST(:c{i} AS regconfig), :query)")
    sql = _CHUNK_WORDS.format(queries="SELECT " + " || ".join(parts), owner=_CHUNK_OWNER)
    return [(int(r.seq), float(r.score)) for r in conn.execute(text(sql), params)]


def chunk_substrings(conn: Connection, terms: tuple[str, ...],
                     limit: int, owner: int = 0) -> list[tuple[int, float]]:
    """(chunk seq, score) of the chunks holding CJK text and any of ``terms`` as a
    substring, by how often they hold them."""
    if not terms:
        return []
    params: dict[str, Any] = {"n": limit, "cjk": _CJK_CLASS, "owner": owner}
    for i, term in enumerate(terms):
        params[f"s{i}"], params[f"t{i}"] = cjk.like_pattern(term), term
    indexes = range(len(terms))
    sql = _CHUNK_SUBSTRINGS.format(
        score=_saturated("text", indexes),
        likes=" OR ".join(f"k.text ILIKE :s{i} ESCAPE '\\'" for i in indexes),
        owner=_CHUNK_OWNER)
    return [(int(r.seq), float(r.score)) for r in conn.execute(text(sql), params)]
