"""The sentences that carry a text: TextRank over their embeddings, no model call."""

from __future__ import annotations

from assistant import SkillContext

EMBED_STEP = 256


def textrank(vectors: list[list[float]], iterations: int = 30, damping: float = 0.85
             ) -> list[float]:
    """PageRank over the cosine-similarity graph of sentence ``vectors``."""
    import numpy as np

    m = np.asarray(vectors, dtype=np.float32)
    sims = np.clip(m @ m.T, 0.0, None)
    np.fill_diagonal(sims, 0.0)
    sums = sims.sum(axis=1, keepdims=True)
    sums[sums == 0] = 1.0
    walk = sims / sums
    n = len(vectors)
    rank = np.full(n, 1.0 / n, dtype=np.float32)
    for _ in range(iterations):
        rank = (1 - damping) / n + damping * walk.T @ rank
    return [float(x) for x in rank]


async def central(sentences: list[str], count: int, ctx: SkillContext) -> list[str]:
    """The ``count`` most central of ``sentences``, in their order, with embedding progress."""
    if len(sentences) <= count:
        return list(sentences)
    vectors: list[list[float]] = []
    for start in range(0, len(sentences), EMBED_STEP):
        ctx.progress(start, len(sentences), "embedding sentences")
        vectors += await ctx.embed(sentences[start:start + EMBED_STEP])
    ranks = textrank(vectors)
    top = sorted(sorted(range(len(sentences)), key=lambda i: -ranks[i])[:count])
    return [sentences[i] for i in top]
