"""Hybrid retrieval over the stored chunks: BM25 (FTS5) and cosine, fused by reciprocal rank.

:class:`HybridSearch` is the daemon's :class:`~assistant.skills.DocumentSearch`. Build it from
the :class:`~assistant.store.Store` and any async embed callable. A hit is kept only when its
cosine similarity to the question reaches ``min_similarity`` (or it matches most of the
question's words), so a question the documents do not cover gets no hits rather than noise.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from assistant.documents.ingest import Embed

if TYPE_CHECKING:
    import numpy as np

    from assistant.store.repository import Store

RRF_K = 60
MIN_SIMILARITY = 0.35


class HybridSearch:
    """``await search(query, k)`` → dicts: n, text, source, location, document, path, chunk_id,
    score (fused), similarity (cosine), keyword_rank."""

    def __init__(self, store: Store, embed: Embed, *, min_similarity: float = MIN_SIMILARITY,
                 candidates: int = 30) -> None:
        self.store = store
        self.embed = embed
        self.min_similarity = min_similarity
        self.candidates = candidates
        self._version: tuple[int, int, str] | None = None
        self._seqs: list[int] = []
        self._matrix: np.ndarray[Any, Any] | None = None

    def _load(self) -> None:
        import numpy as np

        repo = self.store.documents
        version = repo.version()
        if version == self._version:
            return
        seqs, blobs = repo.embeddings()
        self._seqs = seqs
        self._matrix = (np.vstack([np.frombuffer(b, dtype=np.float32) for b in blobs])
                        if blobs else None)
        self._version = version

    async def search(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        import numpy as np

        query = query.strip()
        if not query:
            return []
        await asyncio.to_thread(self._load)
        keyword = await asyncio.to_thread(self.store.documents.keyword_search, query,
                                          self.candidates)
        similarity: dict[int, float] = {}
        vector_ranked: list[int] = []
        if self._matrix is not None:
            q = np.asarray((await self.embed([query]))[0], dtype=np.float32)
            sims = self._matrix @ q
            order = np.argsort(-sims)[: self.candidates]
            vector_ranked = [self._seqs[i] for i in order]
            similarity = {self._seqs[i]: float(sims[i]) for i in range(len(self._seqs))}
        fused: dict[int, float] = {}
        for ranking in (vector_ranked, [seq for seq, _ in keyword]):
            for rank, seq in enumerate(ranking):
                fused[seq] = fused.get(seq, 0.0) + 1.0 / (RRF_K + rank + 1)
        words = {w for w in re.findall(r"\w+", query.lower()) if len(w) > 3}
        keyword_rank = {seq: i for i, (seq, _) in enumerate(keyword)}
        best = sorted(fused, key=lambda s: fused[s], reverse=True)
        chunks = await asyncio.to_thread(self.store.documents.chunks, best[: k * 3])
        hits: list[dict[str, Any]] = []
        for chunk in chunks:
            sim = similarity.get(chunk.seq, 0.0)
            covered = len(words & set(re.findall(r"\w+", chunk.text.lower())))
            if sim < self.min_similarity and not (words and covered >= 0.75 * len(words)
                                                  and len(words) >= 2):
                continue
            hits.append({
                "n": len(hits) + 1, "text": chunk.text, "chunk_id": chunk.seq,
                "document": chunk.title or chunk.path.rsplit("/", 1)[-1], "path": chunk.path,
                "location": chunk.location,
                "source": f"{chunk.path.rsplit('/', 1)[-1]}, {chunk.location}".strip(", "),
                "score": round(fused[chunk.seq], 5), "similarity": round(sim, 4),
                "keyword_rank": keyword_rank.get(chunk.seq),
            })
            if len(hits) == k:
                break
        return hits
