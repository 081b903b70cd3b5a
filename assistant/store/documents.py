"""Documents and their chunks: the storage half of the user's document index.

A document is added whole, in one transaction with all its chunks (their text indexed by the
``chunks_fts`` FTS5 table, and by ``chunks_cjk`` when it holds Chinese, Japanese or Korean, or
on PostgreSQL by their ``tsv`` column in their document's language, see
:mod:`.postgres_search`; their embeddings as float32 blobs), so a failure stores nothing.
Documents are keyed by content hash and record the version of the chunker that cut them;
adding a file at a known path replaces the old version in the same transaction (the ingestion
skips a file whose content and chunker version are unchanged). Reach it as ``store.documents``:
it sees the documents of the store's owner (:meth:`~assistant.store.Store.owned_by`) alone.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import zip_longest
from typing import TYPE_CHECKING, cast

from sqlalchemy import Connection, Table, delete, func, insert, or_, select, text

from assistant.store import cjk, postgres_search
from assistant.store.schema import ChunkRow, DocumentRow
from assistant.store.search import Budget, within

if TYPE_CHECKING:
    from assistant.store.repository import Store

D = cast(Table, DocumentRow.__table__)
K = cast(Table, ChunkRow.__table__)
_TERM = re.compile(r"\w+", re.UNICODE)
# A chunk is found only by its document's owner.
_OWNED = ("EXISTS (SELECT 1 FROM chunks AS k JOIN documents AS d ON d.id = k.document_id "
          "WHERE k.seq = {rowid} AND d.owner = :owner)")
_KEYWORD = text("SELECT rowid, bm25(chunks_fts) AS score FROM chunks_fts "
                "WHERE chunks_fts MATCH :q AND " + _OWNED.format(rowid="chunks_fts.rowid")
                + " ORDER BY score LIMIT :n")
_CJK_KEYWORD = text("SELECT rowid, bm25(chunks_cjk) AS score FROM chunks_cjk "
                    "WHERE chunks_cjk MATCH :q AND " + _OWNED.format(rowid="chunks_cjk.rowid")
                    + " ORDER BY score LIMIT :n")
# A question whose only CJK words are one or two characters long ("模型"): the chunks holding
# any of them, by how often (saturating, as bm25 does). No index helps; chunks are few.
_SHORT_ONLY = """
SELECT seq AS rowid, -({score}) AS score FROM chunks WHERE ({likes}) AND {owned}
ORDER BY score, seq LIMIT :n
"""
_TF = "(length(text) - length(replace(text, :t{i}, ''))) / length(:t{i})"


@dataclass(frozen=True)
class DocumentInfo:
    id: str
    path: str
    title: str
    sha256: str
    added: datetime
    chunks: int = 0
    chunker_version: int = 0
    language: str | None = None  # ISO 639-1; None: not known


@dataclass(frozen=True)
class NewChunk:
    position: int
    location: str
    text: str
    embedding: bytes | None


@dataclass(frozen=True)
class ChunkInfo:
    seq: int
    document_id: str
    position: int
    location: str
    text: str
    path: str
    title: str


def question_words(question: str, max_terms: int | None = None) -> list[str]:
    """The distinct words of ``question`` a keyword search looks for (not single ASCII
    letters): its first ``max_terms``, when given."""
    words = [w for w in _TERM.findall(question.lower()) if len(w) > 1 or not w.isascii()]
    return list(dict.fromkeys(words))[:max_terms]


def fts_or(words: list[str]) -> str:
    """An FTS5 query matching any of ``words`` (each quoted, so nothing is syntax)."""
    return " OR ".join(f'"{w}"' for w in words)


class DocumentRepository:
    """Document and chunk reads and writes on a :class:`Store`'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owner = store.owner

    def by_path(self, path: str) -> DocumentInfo | None:
        """The document stored for ``path`` (its chunk count left at 0), if any."""
        with self.store._read() as conn:
            row = conn.execute(select(D).where(D.c.path == path, D.c.owner == self.owner)
                               ).first()
        return None if row is None else DocumentInfo(
            row.id, row.path, row.title, row.sha256, row.added,
            chunker_version=row.chunker_version, language=row.language)

    def add(self, path: str, title: str, sha256: str, chunks: list[NewChunk],
            chunker_version: int, language: str | None = None) -> DocumentInfo:
        """Store a document and its chunks at once, replacing an older version at ``path``
        (and the same content stored at another path). ``language`` (ISO 639-1) picks how
        PostgreSQL indexes its words."""
        now = datetime.now(UTC)
        doc_id = uuid.uuid4().hex
        with self.store._write() as conn:
            conn.execute(delete(D).where(D.c.owner == self.owner,
                                         or_(D.c.path == path, D.c.sha256 == sha256)))
            # No language leaves the column out, as the schema before migration 6 had it.
            known = {} if language is None else {"language": language}
            conn.execute(insert(D), {"id": doc_id, "path": path, "title": title,
                                     "sha256": sha256, "added": now,
                                     "chunker_version": chunker_version, "owner": self.owner,
                                     **known})
            if chunks:
                conn.execute(insert(K), [
                    {"document_id": doc_id, "position": c.position, "location": c.location,
                     "text": c.text, "embedding": c.embedding, **known} for c in chunks])
        return DocumentInfo(doc_id, path, title, sha256, now, len(chunks), chunker_version,
                            language)

    def all(self) -> list[DocumentInfo]:
        counts = (select(K.c.document_id, func.count().label("n"))
                  .group_by(K.c.document_id).subquery())
        query = (select(D, func.coalesce(counts.c.n, 0).label("n"))
                 .outerjoin(counts, counts.c.document_id == D.c.id)
                 .where(D.c.owner == self.owner).order_by(D.c.added))
        with self.store._read() as conn:
            rows = conn.execute(query).all()
        return [DocumentInfo(r.id, r.path, r.title, r.sha256, r.added, r.n, r.chunker_version,
                             r.language) for r in rows]

    def remove(self, ident: str) -> list[DocumentInfo]:
        """Remove documents whose id starts with ``ident`` or whose path is ``ident``."""
        gone = [d for d in self.all() if d.path == ident or (len(ident) >= 6
                                                                and d.id.startswith(ident))]
        if gone:
            with self.store._write() as conn:
                conn.execute(delete(D).where(D.c.id.in_([d.id for d in gone]),
                                             D.c.owner == self.owner))
        return gone

    def keyword_search(self, question: str, limit: int = 20, *, max_terms: int | None = None,
                       budget: Budget | None = None) -> list[tuple[int, float]]:
        """(chunk seq, bm25 score) of chunks matching words of ``question``, best first.

        A question with Chinese, Japanese or Korean in it searches the trigram index of the
        chunks holding such text for any of its trigrams (see :mod:`assistant.store.cjk`),
        and its other words the word index as usual (chunks in English): the two rankings
        are taken in turn, the trigram one first (their scores are not comparable).

        Each word or trigram is one more list of chunks to merge, so only the question's
        first ``max_terms`` distinct terms are searched for. The search stops once
        ``budget`` is spent (RequestError ``search_timeout``, or 499 when cancelled).

        On PostgreSQL the scores are ``ts_rank_cd``'s, and the trigrams are substrings of
        the chunks holding CJK text (see :mod:`.postgres_search`).
        """
        with self.store._read() as conn, within(conn, budget, "question"):
            if not cjk.has_cjk(question):
                return self._word_search(conn, question_words(question, max_terms), limit)
            terms = cjk.question_terms(question)
            if max_terms is not None:
                terms = terms.first(max_terms)
                max_terms -= len(terms.all())
            found = self._cjk_keyword_search(conn, terms, limit)
            others = self._word_search(
                conn, question_words(cjk.without_cjk(question), max_terms), limit)
        merged: dict[int, float] = {}
        for pair in zip_longest(found, others):
            for hit in pair:
                if hit is not None and hit[0] not in merged:
                    merged[hit[0]] = hit[1]
        return list(merged.items())[:limit]

    def _word_search(self, conn: Connection, words: list[str],
                     limit: int) -> list[tuple[int, float]]:
        if not words:
            return []
        if conn.dialect.name == "postgresql":
            return postgres_search.chunk_words(conn, words, limit, self.owner)
        rows = conn.execute(_KEYWORD, {"q": fts_or(words), "n": limit,
                                       "owner": self.owner}).all()
        return [(int(r.rowid), -float(r.score)) for r in rows]

    def _cjk_keyword_search(self, conn: Connection, terms: cjk.Terms,
                            limit: int) -> list[tuple[int, float]]:
        if conn.dialect.name == "postgresql":
            return postgres_search.chunk_substrings(conn, terms.all(), limit, self.owner)
        params: dict[str, object] = {"n": limit, "owner": self.owner}
        if terms.phrases:
            sql, params["q"] = _CJK_KEYWORD, terms.match(" OR ")
        elif terms.short:
            for i, term in enumerate(terms.short):
                params[f"s{i}"], params[f"t{i}"] = cjk.like_pattern(term), term
            indexes = range(len(terms.short))
            score = " + ".join(f"1.0 * {_TF.format(i=i)} / ({_TF.format(i=i)} + 1.2)"
                               for i in indexes)
            likes = " OR ".join(f"text LIKE :s{i} ESCAPE '\\'" for i in indexes)
            sql = text(_SHORT_ONLY.format(score=score, likes=likes,
                                          owned=_OWNED.format(rowid="chunks.seq")))
        else:
            return []
        rows = conn.execute(sql, params).all()
        return [(int(r.rowid), -float(r.score)) for r in rows]

    def embeddings(self) -> tuple[list[int], list[bytes]]:
        """Every chunk's seq and embedding blob (chunks without one are left out)."""
        with self.store._read() as conn:
            rows = conn.execute(select(K.c.seq, K.c.embedding)
                                .join(D, D.c.id == K.c.document_id)
                                .where(K.c.embedding.is_not(None), D.c.owner == self.owner)
                                .order_by(K.c.seq)).all()
        return [r.seq for r in rows], [r.embedding for r in rows]

    def version(self) -> tuple[int, int, str]:
        """(chunk count, highest seq, when the newest document was stored): changes whenever
        chunks are added, removed or replaced. The time is there because a document's new
        chunks may take back the seqs of the old ones (SQLite reuses the highest rowids)."""
        with self.store._read() as conn:
            count, highest = conn.execute(
                select(func.count(), func.max(K.c.seq)).select_from(K)
                .join(D, D.c.id == K.c.document_id).where(D.c.owner == self.owner)).one()
            newest = conn.execute(select(func.max(D.c.added))
                                  .where(D.c.owner == self.owner)).scalar()
        return int(count), int(highest or 0), "" if newest is None else newest.isoformat()

    def chunks(self, seqs: list[int]) -> list[ChunkInfo]:
        """The chunks ``seqs``, in that order (missing ones left out)."""
        if not seqs:
            return []
        query = (select(K.c.seq, K.c.document_id, K.c.position, K.c.location, K.c.text,
                        D.c.path, D.c.title)
                 .join(D, D.c.id == K.c.document_id)
                 .where(K.c.seq.in_(seqs), D.c.owner == self.owner))
        with self.store._read() as conn:
            found = {r.seq: ChunkInfo(r.seq, r.document_id, r.position, r.location or "",
                                      r.text, r.path, r.title) for r in conn.execute(query)}
        return [found[s] for s in seqs if s in found]
