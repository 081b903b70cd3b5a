"""The measures: BLEU and chrF (sacrebleu), ROUGE-L, SQuAD exact match and F1, accuracy.

Chinese and Japanese are scored by character: sacrebleu's ``zh`` tokenizer for BLEU, and a
per-character LCS for ROUGE-L.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

CJK = {"zh", "ja", "ko"}
_PUNCT = set(string.punctuation) | set("，。！？；：「」『』（）《》、“”‘’")


def bleu(hypotheses: Sequence[str], references: Sequence[str], lang: str = "en") -> float:
    from sacrebleu.metrics.bleu import BLEU

    tokenize = "zh" if lang in CJK else "13a"
    return float(BLEU(tokenize=tokenize).corpus_score(list(hypotheses),
                                                      [list(references)]).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    from sacrebleu.metrics.chrf import CHRF

    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


def _units(text: str, lang: str) -> list[str]:
    if lang in CJK:
        return [c for c in text if not c.isspace() and c not in _PUNCT]
    return re.findall(r"\w+", text.lower())


def rouge_l(hypothesis: str, reference: str, lang: str = "en") -> float:
    """ROUGE-L F1 from the longest common subsequence (of words; of characters for CJK)."""
    hyp, ref = _units(hypothesis, lang), _units(reference, lang)
    if not hyp or not ref:
        return 0.0
    previous = [0] * (len(ref) + 1)
    for h in hyp:
        current = [0]
        for j, r in enumerate(ref, 1):
            current.append(previous[j - 1] + 1 if h == r else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def normalize_answer(text: str, punctuation: str = "") -> str:
    """SQuAD's normalisation: lower case, no punctuation (each mark made ``punctuation``), no
    articles, single spaces."""
    text = "".join(punctuation if ch in _PUNCT else ch for ch in text.lower())
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_SCALE = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_AMOUNT = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?[\s-]*"
                     r"(thousand|million|billion|trillion)\b", re.IGNORECASE)
_GROUPED = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _amounts(text: str) -> str:
    """``text`` with each amount written in words as digits: "$5 million" and "$5-million" as
    "$5000000" (which SQuAD's normalisation makes of "$5,000,000" too), "2.5 billion" as
    "2500000000"; a decimal comma ("2,5 million") is left as it is."""

    def digits(match: re.Match[str]) -> str:
        number = match.group(1).replace(",", "") + (match.group(2) or "")
        return str(round(float(number) * _SCALE[match.group(3).lower()]))

    return _AMOUNT.sub(digits, text)


def _spaced(text: str) -> str:
    """SQuAD's normalisation with punctuation as a space ("28-yard" → "28 yard", where SQuAD's
    gives "28yard"), amounts in digits (:func:`_amounts`, "5,000,000" as "5000000")."""
    return normalize_answer(_GROUPED.sub("", _amounts(text)), punctuation=" ")


def states(passage: str, answer: str) -> bool:
    """Whether ``passage`` states ``answer``: the answer's words found in the passage as
    whole words, each normalised as SQuAD does (case, punctuation, articles), amounts
    compared by value (a passage writing "$5 million" states the answer "$5,000,000"; "$50
    million" does not state "$5 million")."""
    wanted = _spaced(answer)
    return bool(wanted) and f" {wanted} " in f" {_spaced(passage)} "


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(a) for a in answers))


def f1(prediction: str, answers: Sequence[str]) -> float:
    """The best token F1 of ``prediction`` against any of ``answers`` (SQuAD v1.1)."""
    best = 0.0
    pred = normalize_answer(prediction).split()
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = Counter(pred) & Counter(gold)
        same = sum(common.values())
        if same == 0 or not pred or not gold:
            continue
        p, r = same / len(pred), same / len(gold)
        best = max(best, 2 * p * r / (p + r))
    return best


def strip_citations(answer: str) -> str:
    """The answer without ``[n]`` markers and the trailing ``Sources:`` block."""
    answer = answer.split("\n\nSources:", 1)[0]
    return re.sub(r"\s*\[\d+\]", "", answer).strip()


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


_CITATION = re.compile(r"\[(\d+)\]")
_DECLINED = re.compile(r"cannot find|can't find|could not find|not (?:contain|mention|"
                       r"provide|say)|no information|not in the (?:sources|documents)|找不到|"
                       r"没有提到", re.I)


def cited(text: str, count: int) -> list[int]:
    """Source numbers cited as ``[n]`` in ``text`` that exist (1…count), first citation first."""
    return list(dict.fromkeys(n for n in map(int, _CITATION.findall(text)) if 1 <= n <= count))


def declined(text: str) -> bool:
    """Whether an answer says the documents do not hold it."""
    return bool(_DECLINED.search(text))


def bootstrap(values: Sequence[float], samples: int = 2000, seed: int = 0
              ) -> tuple[float, float, float]:
    """The mean of ``values`` and its 95 % bootstrap interval (low, high): items resampled
    with replacement."""
    import random

    if not values:
        raise ValueError("bootstrap needs a non-empty list")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    return sum(values) / n, means[int(0.025 * samples)], means[int(0.975 * samples) - 1]


def paired_bootstrap(a: Sequence[float], b: Sequence[float], samples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """The mean of ``a - b`` over paired items and its 95 % bootstrap interval (low, high):
    items resampled with replacement, the same items for both systems."""
    if len(a) != len(b) or not a:
        raise ValueError("paired_bootstrap needs two equally long, non-empty lists")
    return bootstrap([x - y for x, y in zip(a, b, strict=True)], samples, seed)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """The area under the ROC curve of ``scores`` for telling ``labels`` True from False: the
    chance that a random True item scores above a random False one, ties counting half
    (Mann-Whitney U). 0.5 is no signal."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        raise ValueError("auroc needs items of both labels")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))
