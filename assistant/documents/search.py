"""Hybrid retrieval over the stored chunks: BM25 (FTS5) and cosine, fused by reciprocal rank,
then the best hits ranked again by their sentence that best matches the question.

:class:`HybridSearch` is the daemon's :class:`~assistant.skills.DocumentSearch`. Build it from
the :class:`~assistant.store.Store` and any async embed callable. A hit is kept only when its
cosine similarity to the question reaches ``min_similarity``, or it holds two thirds of the
question's own words (at least two; stop words do not count): a question the documents do not
cover gets no hits rather than noise, and one naming what a passage names ("At what university
is Bellomy Field located?") finds it however far its embedding lands.

A question is the user's text, however long (summarize searches with a whole turn): its
keyword half searches only the first ``search.max_query_chars`` characters and
``search.max_terms`` distinct words, within ``search.timeout`` (a search that runs out of time
gives no keyword hits, and the vector half answers alone), and stops when the turn is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from assistant.config import SearchSettings
from assistant.documents.ingest import Embed
from assistant.errors import AssistantError, RequestError
from assistant.store.search import Budget
from assistant.text import STOP_WORDS, detect_language, stems, words

if TYPE_CHECKING:
    import numpy as np

    from assistant.store.repository import Store

log = logging.getLogger("assistant.documents")
RRF_K = 60
MIN_SIMILARITY = 0.35


class HybridSearch:
    """``await search(query, k)`` → dicts: n, text, source, location, document, path, chunk_id,
    score (fused), similarity (cosine), keyword_rank, match (how well its best sentence
    matches the question, :func:`by_sentence`; absent for a lone hit). Fusion gives up to
    ``k + 4`` hits (at most twice ``k``); :func:`by_sentence` orders them and the best ``k``
    are returned, best first, numbered in that order (``score`` is still the fusion's)."""

    def __init__(self, store: Store, embed: Embed, *, min_similarity: float = MIN_SIMILARITY,
                 candidates: int = 30,
                 split: Callable[[str, str | None], list[str]] | None = None,
                 limits: SearchSettings | None = None) -> None:
        from assistant.text import sentences

        self.store = store
        self.embed = embed
        self.split = split or sentences
        self.min_similarity = min_similarity
        self.candidates = candidates
        self.limits = limits or SearchSettings()
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
        keyword = await self._keyword(query)
        similarity: dict[int, float] = {}
        vector_ranked: list[int] = []
        query_vector: list[float] | None = None
        if self._matrix is not None:
            query_vector = (await self.embed([query]))[0]
            q = np.asarray(query_vector, dtype=np.float32)
            sims = self._matrix @ q
            order = np.argsort(-sims)[: self.candidates]
            vector_ranked = [self._seqs[i] for i in order]
            similarity = {self._seqs[i]: float(sims[i]) for i in range(len(self._seqs))}
        fused: dict[int, float] = {}
        for ranking in (vector_ranked, [seq for seq, _ in keyword]):
            for rank, seq in enumerate(ranking):
                fused[seq] = fused.get(seq, 0.0) + 1.0 / (RRF_K + rank + 1)
        lang, asked = await asyncio.to_thread(_language_and_words, query)
        keyword_rank = {seq: i for i, (seq, _) in enumerate(keyword)}
        best = sorted(fused, key=lambda s: fused[s], reverse=True)
        chunks = await asyncio.to_thread(self.store.documents.chunks, best[: k * 4])
        hits: list[dict[str, Any]] = []
        for chunk in chunks:
            sim = similarity.get(chunk.seq, 0.0)
            if sim < self.min_similarity and not _holds_most(asked, chunk.text, lang):
                continue
            hits.append({
                "n": len(hits) + 1, "text": chunk.text, "chunk_id": chunk.seq,
                "document": chunk.title or chunk.path.rsplit("/", 1)[-1], "path": chunk.path,
                "location": chunk.location,
                "source": f"{chunk.path.rsplit('/', 1)[-1]}, {chunk.location}".strip(", "),
                "score": round(fused[chunk.seq], 5), "similarity": round(sim, 4),
                "keyword_rank": keyword_rank.get(chunk.seq),
            })
            if len(hits) == min(2 * k, k + 4):
                break
        try:
            hits = await by_sentence(query, hits, self.embed,
                                     lambda text: self.split(text, lang), query_vector, lang)
        except AssistantError as exc:  # no embeddings now: the fused order stands
            log.warning("ranking by sentence failed", extra={"error": exc.message})
        return [{**hit, "n": n} for n, hit in enumerate(hits[:k], 1)]

    async def _keyword(self, query: str) -> list[tuple[int, float]]:
        """The keyword half, bounded (see the module's docstring)."""
        cancel = threading.Event()
        budget = Budget(self.limits.timeout, cancel=cancel)
        try:
            return await asyncio.to_thread(
                self.store.documents.keyword_search, query[: self.limits.max_query_chars],
                self.candidates, max_terms=self.limits.max_terms, budget=budget)
        except RequestError as exc:
            if exc.code != "search_timeout":
                raise
            log.warning("document keyword search ran out of time: vector hits only",
                        extra={"timeout_s": self.limits.timeout, "chars": len(query)})
            return []
        except asyncio.CancelledError:
            cancel.set()  # the thread's SQL stops at its next progress check
            raise



class SearchPerOwner:
    """``searches(owner)``: the :class:`HybridSearch` of ``owner``'s documents (0 the
    daemon's owner, else a user's), made on first use; each holds the embeddings of its
    owner's chunks alone, so no search reaches another owner's documents."""

    def __init__(self, store: Store, embed: Embed, *,
                 limits: SearchSettings | None = None) -> None:
        self.store = store
        self.embed = embed
        self.limits = limits
        self._searches: dict[int, HybridSearch] = {}

    def __call__(self, owner: int) -> HybridSearch:
        if owner not in self._searches:
            self._searches[owner] = HybridSearch(self.store.owned_by(owner), self.embed,
                                                 limits=self.limits)
        return self._searches[owner]


def _language_and_words(query: str) -> tuple[str, set[str]]:
    """``query``'s language and its content words, found off the event loop: a query may be a
    whole turn (summarize searches with one), and the stop list's first use imports spaCy."""
    lang = detect_language(query)
    return lang, _content_words(query, lang)


def _content_words(text: str, lang: str | None = None) -> set[str]:
    """The words of ``text`` that say what it is about: longer than three letters, no stop
    word of the language detector's ("what", "does"), and, for an English question, none of
    spaCy's English list (which, many, whose, also qualifiers such as first, last, former:
    a passage is asked to hold what the question names, not how it narrows it).

    "Which former referee served as an analyst for CBS?" names referee, served and analyst;
    the passage "CBS analyst and retired referee Mike Carey" (similarity 0.24) holds two of
    them and is kept, where two of five (with "which" and "former") was too few. On SQuAD's
    Super Bowl 50 article the English list gave the gold passage to 102 of 105 questions
    (every 4th) instead of 101, to the same 298 of the other 315, and still no passage to the
    ten it does not answer. Imports spaCy on first use: call it off the event loop."""
    found = {w for w in re.findall(r"\w+", text.lower()) if len(w) > 3 and w not in STOP_WORDS}
    if lang == "en":
        found -= _english_stop_words()
    return set(stems(found, lang))


@functools.cache
def _english_stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS as ENGLISH

    return frozenset(ENGLISH)


def _holds_most(asked: set[str], text: str, lang: str | None = None) -> bool:
    """Whether ``text`` holds two thirds of the question's content words ``asked`` (stems of
    ``lang``), two at least. On SQuAD's Super Bowl 50 article no paragraph held more than a
    third of any of ten questions it does not answer ("Who painted the Sistine Chapel?"),
    with stems as before them."""
    covered = len(asked & set(stems(re.findall(r"\w+", text.lower()), lang)))
    return covered >= 2 and covered >= len(asked) * 2 / 3


async def by_sentence(query: str, hits: list[dict[str, Any]], embed: Embed,
                      split: Callable[[str], list[str]],
                      query_vector: Sequence[float] | None = None, lang: str | None = None
                      ) -> list[dict[str, Any]]:
    """``hits`` ordered by their sentence that best matches ``query``, each with that
    sentence's score as ``match``.

    A sentence scores the share of the query's words it holds, each weighed by how rare it is
    among the sentences ("the" counts for little, "franchise" for much), plus its cosine
    similarity to the query. Fusion ranks whole chunks, where the one sentence that answers is
    diluted by the rest: on SQuAD's Super Bowl 50 article (53 questions over its 54 paragraphs)
    the first hit held the answer for 75 % of the questions before this ranking, 83 % after.
    """
    import numpy as np

    if len(hits) < 2:
        return hits

    def split_all() -> list[list[str]]:
        return [[s for s in split(hit["text"]) if s.strip()] or [hit["text"]] for hit in hits]

    parts = await asyncio.to_thread(split_all)
    owner = [i for i, found in enumerate(parts) for _ in found]
    sentences = [s for found in parts for s in found]
    vectors = await embed(sentences if query_vector is not None else [query, *sentences])
    if query_vector is None:
        query_vector, vectors = vectors[0], vectors[1:]
    cosine = np.asarray(vectors, dtype=np.float32) @ np.asarray(query_vector, dtype=np.float32)
    held = [set(stems(words(s), lang)) for s in sentences]
    asked = set(stems(words(query), lang))
    rarity = {w: math.log((len(held) + 1) / (1 + sum(w in h for h in held))) for w in asked}
    total = sum(rarity.values()) or 1.0
    best = [-math.inf] * len(hits)
    for i, sentence_words in enumerate(held):
        score = sum(rarity[w] for w in asked & sentence_words) / total + float(cosine[i])
        best[owner[i]] = max(best[owner[i]], score)
    return [{**hits[i], "match": round(best[i], 4)}
            for i in sorted(range(len(hits)), key=lambda i: -best[i])]
