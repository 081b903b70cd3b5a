"""Short answers held to their sources.

A question asking for a fact ("Who…", "When…", "How many…", "哪一年…") gets the short form: a
name, a date, a phrase. A small model pads or rephrases such answers ("It lasts for two years"
for "lasts two years"), so an answer that is not word for word in a passage is snapped to the
shortest span of a passage that holds all its own words (:func:`snap`), when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from assistant.eval.metrics import normalize_answer
from assistant.text import STOP_WORDS
from assistant.text.words import word_spans

# The question word first, or after a leading clause ("According to my notes, when…").
_FACTOID = re.compile(
    r"(?:^|[,，:：;]\s*)(?:who|whom|whose|when|where|which|what|how (?:many|much|long|old|far|"
    r"big|tall|often)|in what|on what|at what|from what|to what|by what|qui|quand|où|quel|"
    r"quelle|combien|wer|wann|wo|welche[rsnm]?|wie (?:viele|viel|lange|alt)|quién|cuándo|dónde|"
    r"cuál|cuánto|cuántos)\b"
    r"|谁|什么时候|哪一年|哪年|哪里|哪儿|哪个|哪位|哪家|多少|几个|几年|几天|几次|何时|是什么|"
    r"誰|いつ|どこ|どの(?!よう)|いくつ|(?<!任)何(?:年|人|時)",
    re.I)
# Asking for an account, not a fact: why, how to, what the documents say about something.
_REASON = re.compile(
    r"\b(?:why|how (?:do|does|did|can|could|should|to|is|are|was|were)|explain|describe|"
    r"compare|summar\w*|what (?:does|did|do) .{0,60}\b(?:say|mention|write|tell)|what are the "
    r"(?:\w+ )?(?:advantages|disadvantages|benefits|differences|steps|reasons|risks)|"
    r"pourquoi|comment|warum|wieso|por qué|cómo)\b|为什么|怎么|如何|なぜ|どうやって|どのように",
    re.I)
# Words that change an answer's meaning; kept when an answer is snapped.
_NEGATIONS = {"not", "no", "never", "without", "none", "nor", "不", "没", "未"}
_NUMBER = re.compile(r"\$?\s*(\d[\d,]*(?:\.\d+)?)")
_SMALL = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen", "twenty")
_SCALES = ((1e9, "billion"), (1e6, "million"), (1e3, "thousand"))


def is_factoid(question: str) -> bool:
    """Whether ``question`` asks for a fact (a short answer), not a reason or an account."""
    return bool(_FACTOID.search(question)) and not _REASON.search(question)


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """(normalized word, start, end) of ``text``'s words, articles left out as SQuAD does."""
    return [(word, start, end) for raw, start, end in word_spans(text)
            if (word := normalize_answer(raw))]


def number_as_written(answer: str, texts: Sequence[str]) -> str | None:
    """How the best passage writing the number ``answer`` writes it: a model answering "7" or
    "5000000" rewrote "seven" or "$5 million". None when ``answer`` is not a number alone, or
    no passage holds it in any of these forms."""
    match = _NUMBER.fullmatch(answer.strip())
    if match is None:
        return None
    value = float(match.group(1).replace(",", ""))
    forms = []
    for scale, word in _SCALES:
        if value >= scale and round(value / scale, 2) * scale == value:
            forms.append(rf"{re.escape(f'{value / scale:g}')}\s+{word}")
    if value == int(value):
        forms.append(f"{int(value):,}".replace(",", ",?"))
        if value < len(_SMALL):
            forms.append(_SMALL[int(value)])
    else:
        forms.append(re.escape(f"{value:g}"))
    pattern = re.compile(rf"\$?(?<![\w.,])(?:{'|'.join(forms)})(?![\w]|[.,]\d)", re.I)
    for text in texts:
        if (found := pattern.search(text)) is not None:
            return found.group()
    return None


def snap(answer: str, passages: Sequence[dict[str, Any]], question: str = "") -> str:
    """``answer`` as a span of ``passages`` (best first), when one says the same more briefly.

    A number alone is the passages' own way of writing it (:func:`number_as_written`).
    Else unchanged when a passage holds it word for word, or when it has no word beyond the
    question's and the stop words. Else the shortest span of a passage holding every such word
    (negations count), at most two words longer than the answer: asked how long the warranty
    is, "It is said to last for 2 years, it lasts two years" is not snapped (no span holds
    all), "It lasts for two years" becomes "lasts two years". Else unchanged: the model said
    something the passages do not hold in so many words.
    """
    texts = [str(p.get("text", "")) for p in passages]
    number = number_as_written(answer, texts)
    if number is not None:
        return number
    tokens = _tokens(answer)
    wanted = [w for w, _, _ in tokens]
    if not wanted:
        return answer
    normal = " ".join(wanted)
    if any(normal in " ".join(w for w, _, _ in _tokens(t)) for t in texts):
        return answer
    asked = {w for w, _, _ in _tokens(question)}
    needed = {w for w in wanted
              if w in _NEGATIONS or (w not in asked and w not in STOP_WORDS)}
    if not needed:
        return answer
    best: tuple[int, str] | None = None
    for text in texts:
        words = _tokens(text)
        for i, (word, start, _) in enumerate(words):
            if word not in needed:
                continue  # a shortest span starts with a needed word…
            found: set[str] = set()
            for j in range(i, min(len(words), i + len(wanted) + 2)):
                found.add(words[j][0])
                if needed <= found:  # … and ends when it holds them all
                    if best is None or j - i < best[0]:
                        best = (j - i, text[start:words[j][2]])
                    break
    return best[1] if best is not None else answer
