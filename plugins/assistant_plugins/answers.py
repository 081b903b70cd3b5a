"""Short answers held to their sources.

A question asking for a fact ("Who…", "When…", "How many…", "哪一年…") gets the short form: a
name, a date, a phrase. A small model paraphrases or pads such answers ("The game was played
in 2016" for "2016"), so an answer that is not word for word in a passage is snapped to the
span of the passages that matches it best (:func:`snap`), when one matches well.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from assistant.eval.metrics import normalize_answer

_CJK = "\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_FACTOID = re.compile(
    r"^\s*(?:who|whom|whose|when|where|which|what|how (?:many|much|long|old|far|big|tall)|"
    r"in what|on what|at what|from what|to what|by what|name|qui|quand|où|quel|quelle|"
    r"combien|wer|wann|wo|welche[rsnm]?|wie (?:viele|viel|lange|alt)|quién|cuándo|dónde|"
    r"cuál|cuánto|cuántos)\b"
    r"|(?:谁|什么时候|哪一年|哪年|哪里|哪儿|哪个|哪位|哪家|多少|几|什么|何时|誰|いつ|どこ|どの|いくつ|何)",
    re.I)
_REASON = re.compile(r"\b(?:why|how (?:do|does|did|can|to|is|are)|explain|describe|compare|"
                     r"summar|pourquoi|comment|warum|wieso|por qué|cómo)\b|为什么|怎么|如何|なぜ|"
                     r"どうやって", re.I)
SNAP_F1 = 0.5  # below this, the passages hold no span close enough to the answer


def is_factoid(question: str) -> bool:
    """Whether ``question`` asks for a fact (a short answer), not a reason or a method."""
    return bool(_FACTOID.search(question)) and not _REASON.search(question)


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """(normalized word, start, end) of ``text``'s words, articles left out as SQuAD does."""
    out = []
    for match in _TOKEN.finditer(text):
        word = normalize_answer(match.group())
        if word:
            out.append((word, match.start(), match.end()))
    return out


def _f1(candidate: Sequence[str], answer: Counter[str]) -> float:
    same = sum((Counter(candidate) & answer).values())
    if not same:
        return 0.0
    precision, recall = same / len(candidate), same / sum(answer.values())
    return 2 * precision * recall / (precision + recall)


def snap(answer: str, passages: Sequence[dict[str, Any]]) -> str:
    """``answer`` as a span of ``passages`` (best first): unchanged when a passage holds it
    word for word, else the span of at most its length plus two words that shares most of its
    words (token F1 ≥ :data:`SNAP_F1`; the earlier passage wins a tie), else unchanged."""
    wanted = [w for w, _, _ in _tokens(answer)]
    if not wanted:
        return answer
    normal = " ".join(wanted)
    if any(normal in " ".join(w for w, _, _ in _tokens(str(p.get("text", ""))))
           for p in passages):
        return answer
    counts = Counter(wanted)
    best, best_span = SNAP_F1, None
    for passage in passages:
        text = str(passage.get("text", ""))
        tokens = _tokens(text)
        words = [w for w, _, _ in tokens]
        for i, (word, _, _) in enumerate(tokens):
            if word not in counts:
                continue  # a best span starts with a word of the answer
            for j in range(i + 1, min(len(tokens), i + len(wanted) + 2) + 1):
                if words[j - 1] not in counts:
                    continue  # … and ends with one
                score = _f1(words[i:j], counts)
                if score > best:
                    best, best_span = score, text[tokens[i][1]:tokens[j - 1][2]]
    return best_span if best_span is not None else answer
