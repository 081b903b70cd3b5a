"""The router: which skill takes a turn, and why.

Order: an explicit command (``/translate …``, ``@qa …``) > a stored user correction of this very
utterance > a semantic match against each skill's example utterances > the chat fallback.

The semantic score of a skill is the mean of its ``top_k`` best example similarities, where an
example's similarity blends the MiniLM embedding cosine with a character n-gram cosine
(``lexical_weight``). Why the blend: all-MiniLM-L6-v2 has an English WordPiece vocabulary in
which most Chinese and Japanese characters are ``[UNK]``, so its vectors alone cannot tell "请翻译"
from "请总结"; character n-grams keep those words, in any script, and the embedding keeps
paraphrase similarity. The winner must reach its threshold and lead the fallback skill (chat,
which has examples of its own) by ``margin``, else the turn goes to the fallback.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from assistant.skills import Skill

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
Method = Literal["explicit", "correction", "semantic", "fallback"]

_COMMAND = re.compile(r"^\s*[/@]([\w-]+)(?:\s+|$)(.*)$", re.S)
_HEAD = re.compile(r"^([^:：\n]{2,80})[:：\n]\s*(.+)$", re.S)
LONG_BODY = 60
MAX_ROUTED_CHARS = 300
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


@dataclass(frozen=True)
class RouteDecision:
    """Where a turn goes and why; sent to the client before the skill runs."""

    method: Method
    skill: str
    score: float
    runner_up: str | None
    runner_up_score: float
    explanation: str
    text: str
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def request_part(text: str) -> str:
    """The part of an utterance that says what to do.

    "Summarize: <three paragraphs>" is routed on "Summarize": a long body would drown the
    instruction. Without such a head, the first ``MAX_ROUTED_CHARS`` characters are used.
    """
    text = text.strip()
    match = _HEAD.match(text)
    if match and len(match.group(2)) > LONG_BODY:
        return match.group(1)
    return text[:MAX_ROUTED_CHARS]


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def char_ngrams(text: str) -> Counter[str]:
    """Character 1-2-grams of CJK runs and 3-grams of padded Latin words."""
    grams: Counter[str] = Counter()
    for token in re.findall(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+|\w+", normalize(text)):
        if _CJK.match(token):
            grams.update(token)
            grams.update(token[i:i + 2] for i in range(len(token) - 1))
        else:
            padded = f" {token} "
            grams.update(padded[i:i + 3] for i in range(len(padded) - 2))
    return grams


class _Lexical:
    """TF-IDF cosine over character n-grams, with an inverted index for speed."""

    def __init__(self, texts: list[str]) -> None:
        counts = [char_ngrams(t) for t in texts]
        df: Counter[str] = Counter(g for c in counts for g in c)
        n = len(texts)
        self.idf = {g: math.log((1 + n) / (1 + d)) + 1 for g, d in df.items()}
        self.index: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for i, c in enumerate(counts):
            vec = self._weigh(c)
            for g, w in vec.items():
                self.index[g].append((i, w))
        self.size = n

    def _weigh(self, grams: Counter[str]) -> dict[str, float]:
        vec = {g: (1 + math.log(c)) * self.idf.get(g, 0.0) for g, c in grams.items()}
        norm = math.sqrt(sum(w * w for w in vec.values())) or 1.0
        return {g: w / norm for g, w in vec.items() if w}

    def similarities(self, text: str) -> list[float]:
        sims = [0.0] * self.size
        for g, w in self._weigh(char_ngrams(text)).items():
            for i, v in self.index.get(g, ()):
                sims[i] += w * v
        return sims


class Router:
    """Routes utterances to the skills it was given. Build one per set of loaded skills."""

    def __init__(
        self,
        skills: Mapping[str, Skill],
        embed: Embed,
        *,
        corrections_path: Path | None = None,
        fallback: str = "chat",
        threshold: float = 0.3,
        top_k: int = 3,
        lexical_weight: float = 0.6,
        margin: float = 0.02,
        cache_path: Path | None = None,
    ) -> None:
        self.skills = dict(skills)
        self.embed = embed
        self.corrections_path = corrections_path
        self.fallback = fallback
        self.threshold = threshold
        self.top_k = top_k
        self.lexical_weight = lexical_weight
        self.margin = margin
        self.corrections: dict[str, str] = self._read_corrections()
        self._labels: list[str] = []
        self._matrix: Any = None
        self._lexical: _Lexical | None = None
        self._cache: dict[str, list[float]] = {}
        # Example embeddings kept on disk, so a restart does not embed every example again.
        # The caller names the file after the embedding model, so another model never reads it.
        self.cache_path = cache_path

    # -- examples ------------------------------------------------------------------------

    def examples(self) -> list[tuple[str, str]]:
        """(skill, utterance) pairs: each skill's examples, then the user's corrections."""
        pairs = [(name, ex) for name, skill in self.skills.items() for ex in skill.examples]
        pairs += [(skill, text) for text, skill in self.corrections.items() if skill in self.skills]
        return pairs

    async def warm(self) -> None:
        """Embed every example once; later calls reuse the cached matrix."""
        if self._matrix is not None:
            return
        import numpy as np

        pairs = self.examples()
        self._labels = [skill for skill, _ in pairs]
        texts = [text for _, text in pairs]
        if self.cache_path is not None and not self._cache:
            self._cache.update(_read_vectors(self.cache_path))
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, await self.embed(missing), strict=True))
            if self.cache_path is not None:
                _write_vectors(self.cache_path, {t: self._cache[t] for t in texts})
        vectors = [self._cache[t] for t in texts]
        self._matrix = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        self._lexical = _Lexical(texts)

    # -- routing -------------------------------------------------------------------------

    def explicit(self, text: str) -> tuple[str, str] | None:
        """(skill, remaining text) for ``/skill rest`` or ``@skill rest`` naming a known skill."""
        match = _COMMAND.match(text)
        if match and match.group(1).lower() in self.skills:
            return match.group(1).lower(), match.group(2).strip()
        return None

    @staticmethod
    def command(text: str) -> str | None:
        """The skill a ``/skill …`` or ``@skill …`` at the start of ``text`` names, known or not."""
        match = _COMMAND.match(text)
        return match.group(1).lower() if match else None

    async def scores(self, text: str) -> dict[str, float]:
        """Each skill's semantic score for ``text``, best first."""
        import numpy as np

        await self.warm()
        assert self._lexical is not None
        if not self._labels:
            return {}
        query = np.asarray((await self.embed([text]))[0], dtype=np.float32)
        sims = (1 - self.lexical_weight) * (self._matrix @ query)
        sims += self.lexical_weight * np.asarray(self._lexical.similarities(text))
        per_skill: dict[str, list[float]] = defaultdict(list)
        for label, sim in zip(self._labels, sims.tolist(), strict=True):
            per_skill[label].append(sim)
        out = {
            name: float(np.mean(sorted(values, reverse=True)[: self.top_k]))
            for name, values in per_skill.items()
        }
        return dict(sorted(out.items(), key=lambda kv: kv[1], reverse=True))

    def threshold_of(self, skill: str) -> float:
        value = self.skills[skill].threshold if skill in self.skills else None
        return self.threshold if value is None else value

    async def route(self, text: str) -> RouteDecision:
        hit = self.explicit(text)
        if hit:
            skill, rest = hit
            return RouteDecision("explicit", skill, 1.0, None, 0.0,
                                 f"explicit command: you asked for '{skill}'", rest)
        stripped = text.strip()
        corrected = self.corrections.get(normalize(stripped))
        if corrected in self.skills:
            return RouteDecision("correction", corrected, 1.0, None, 0.0,
                                 f"you re-routed this utterance to '{corrected}' before", stripped)
        scores = await self.scores(request_part(stripped))
        ranked = list(scores.items())
        best, best_score = ranked[0] if ranked else (self.fallback, 0.0)
        runner, runner_score = ranked[1] if len(ranked) > 1 else (None, 0.0)
        needed = self.threshold_of(best)
        fallback_score = scores.get(self.fallback, 0.0)
        if best != self.fallback and best_score - fallback_score < self.margin:
            why = (f"{best} ({best_score:.2f}) is not clearly ahead of {self.fallback} "
                   f"({fallback_score:.2f}): margin {self.margin:.2f} not met")
            return RouteDecision("fallback", self.fallback, round(fallback_score, 4), best,
                                 round(best_score, 4), why, stripped,
                                 {k: round(v, 3) for k, v in scores.items()})
        rounded = {k: round(v, 3) for k, v in scores.items()}
        if best_score >= needed or best == self.fallback:
            why = (f"closest examples are {best}'s (score {best_score:.2f} ≥ threshold "
                   f"{needed:.2f})" if best != self.fallback else
                   f"closest examples are general conversation (score {best_score:.2f})")
            if runner:
                why += f"; runner-up {runner} at {runner_score:.2f}"
            return RouteDecision("semantic", best, round(best_score, 4), runner,
                                 round(runner_score, 4), why, stripped, rounded)
        why = (f"no skill is close enough: best {best} at {best_score:.2f} < threshold "
               f"{needed:.2f}; falling back to {self.fallback}")
        return RouteDecision("fallback", self.fallback, round(best_score, 4), best,
                             round(best_score, 4), why, stripped, rounded)

    # -- corrections ---------------------------------------------------------------------

    def with_corrections(self, path: Path | None) -> Router:
        """A router of the same skills and settings whose corrections are those in ``path``
        (another user's, say); it shares this one's embeddings of example texts, and leaves
        their file on disk to this one."""
        other = copy.copy(self)
        other.corrections_path = path
        other.corrections = other._read_corrections()
        other._labels, other._matrix, other._lexical = [], None, None
        other.cache_path = None
        return other

    def _read_corrections(self) -> dict[str, str]:
        path = self.corrections_path
        if path is None or not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {normalize(e["text"]): str(e["skill"]) for e in data.get("examples", [])
                if isinstance(e, dict) and "text" in e and "skill" in e}

    def correct(self, text: str, skill: str) -> None:
        """Re-route ``text`` to ``skill`` from now on; similar utterances follow it.

        The utterance is kept as a local example in ``corrections_path`` (JSON).
        """
        if skill not in self.skills:
            from assistant.errors import RequestError

            raise RequestError(f"no skill named '{skill}'; known: {', '.join(sorted(self.skills))}",
                               code="unknown_skill", param="skill")
        self.corrections[normalize(text)] = skill
        self._matrix = None  # the examples changed: re-embed on next use
        if self.corrections_path is not None:
            self.corrections_path.parent.mkdir(parents=True, exist_ok=True)
            payload = {"examples": [{"text": t, "skill": s}
                                    for t, s in sorted(self.corrections.items())]}
            _write_json(self.corrections_path, payload)


def _read_vectors(path: Path) -> dict[str, list[float]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, list)}


def _write_json(path: Path, payload: Any, indent: int | None = 1) -> None:
    """Write through a fresh temp file (never a fixed name a symlink could sit at), then swap."""
    from assistant.models.install import atomic_write_text

    atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=indent))


def _write_vectors(path: Path, vectors: dict[str, list[float]]) -> None:
    with contextlib.suppress(OSError):  # a cache: losing it costs time, not correctness
        _write_json(path, vectors, indent=None)
