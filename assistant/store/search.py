"""Full-text search over messages: FTS5 with bm25 ranking and snippets on SQLite, ``LIKE``
elsewhere. Called by :class:`~assistant.store.repository.Store` on its own connection."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, text

from assistant.store.records import SearchHit
from assistant.store.schema import parse_time

SNIPPET_TOKENS = 12
_WORD = re.compile(r"\w+\*?", re.UNICODE)

# The FTS query picks the best rows first (bm25 is cheapest on the FTS table itself), then
# the join fetches what a hit shows.
_FTS = """
SELECT m.id, m.conversation_id, c.title, m.role, m.skill, m.created, hit.snip, hit.rank
FROM (
    SELECT messages_fts.rowid AS seq,
           snippet(messages_fts, 0, :open, :close, '…', :tokens) AS snip,
           bm25(messages_fts) AS rank
    FROM messages_fts
    {join}
    WHERE messages_fts MATCH :query {filter}
    ORDER BY rank
    LIMIT :limit
) AS hit
JOIN messages AS m ON m.seq = hit.seq
JOIN conversations AS c ON c.id = m.conversation_id
ORDER BY hit.rank
"""
_SKILL_JOIN = "JOIN messages AS f ON f.seq = messages_fts.rowid"
_SKILL_FILTER = """AND (f.skill = :skill OR EXISTS (
    SELECT 1 FROM messages AS r WHERE r.parent_id = f.id AND r.skill = :skill))"""

_LIKE = """
SELECT m.id, m.conversation_id, c.title, m.role, m.skill, m.created, m.content AS snip,
       0.0 AS rank
FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE {words} {filter}
ORDER BY m.created DESC
LIMIT :limit
"""
_LIKE_SKILL = """AND (m.skill = :skill OR EXISTS (
    SELECT 1 FROM messages AS r WHERE r.parent_id = m.id AND r.skill = :skill))"""


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
    highlight: tuple[str, str],
) -> list[SearchHit]:
    params: dict[str, Any] = {"limit": max(1, limit), "skill": skill}
    if conn.dialect.name == "sqlite":
        fts = fts_query(query)
        if not fts:
            return []
        params |= {"query": fts, "open": highlight[0], "close": highlight[1],
                   "tokens": SNIPPET_TOKENS}
        sql = _FTS.format(join=_SKILL_JOIN if skill else "",
                          filter=_SKILL_FILTER if skill else "")
    else:
        words = [w.rstrip("*") for w in _WORD.findall(query)]
        if not words:
            return []
        clauses = []
        for i, word in enumerate(words):
            params[f"w{i}"] = f"%{word}%"
            clauses.append(f"LOWER(m.content) LIKE LOWER(:w{i})")
        sql = _LIKE.format(words=" AND ".join(clauses), filter=_LIKE_SKILL if skill else "")
    rows = conn.execute(text(sql), params).all()
    return [
        SearchHit(
            conversation_id=r.conversation_id, conversation_title=r.title, message_id=r.id,
            role=r.role, skill=r.skill, created=parse_time(r.created), snippet=r.snip,
            rank=float(r.rank),
        )
        for r in rows
    ]
