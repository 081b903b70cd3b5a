"""The shape a request asks for: how many bullets, and reading bullets out of a reply.

"in three bullet points", "5 bullets", "三个要点", "en trois points", "in drei Stichpunkten":
the count is honoured exactly (:func:`bullet_count`). A small model's reply is read back as
bullets whatever it wrote — a list, numbered lines, or sentences (:func:`bullet_items`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10,
    "un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "sept": 7,
    "huit": 8, "neuf": 9, "dix": 10,
    "eins": 1, "ein": 1, "einem": 1, "zwei": 2, "drei": 3, "vier": 4, "fünf": 5, "sechs": 6,
    "sieben": 7, "acht": 8, "neun": 9, "zehn": 10,
    "uno": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8,
    "nueve": 9, "diez": 10,
    "一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
    "十": 10,
}
_COUNT_WORD = "|".join(sorted(map(re.escape, _NUMBERS), key=len, reverse=True))
# "three bullet points", "3 bullets", "5 key points", "trois points", "drei Stichpunkte",
# "tres viñetas", "三个要点", "3条", "五点" — not "2.5 points", "三点开始" (three o'clock) nor
# "一点" (a little): a CJK count needs 个, 条 or 要点.
_COUNT = re.compile(
    rf"(?<![A-Za-z0-9.])(\d{{1,2}}|{_COUNT_WORD})(?:\s*(?:short|key|main|brief)?\s*"
    r"(?:bullets?(?:\s+points?)?\b|points?\b|puces|stichpunkt\w*|punkte\b|viñetas|puntos)"
    r"|\s*(?:个要点|个重点|条|個|つの(?:要点|ポイント)|点(?=[にでを]まとめ)))",
    re.I)
_LETTER = re.compile(r"[^\W\d_]")  # a point has words, not only numbers ("1.1.1")
_MARKER = re.compile(r"^\s*(?:[-*•·]|\d{1,2}[.)、](?!\d)|[（(]?\d{1,2}[）)])\s*")


def bullet_count(request: str) -> int | None:
    """The number of bullets ``request`` (the instruction, not the text to summarize) asks
    for (1–20), or None when it names none."""
    match = _COUNT.search(request[:300])
    if match is None:
        return None
    word = match.group(1).lower()
    n = int(word) if word.isdigit() else _NUMBERS.get(word)
    return n if n is not None and 1 <= n <= 20 else None


def bullet_items(reply: str, split: Callable[[str], list[str]] | None = None) -> list[str]:
    """The distinct points of ``reply``: its list items, or its lines, or its sentences.

    ``split`` (text → sentences) cuts a reply written as prose; without it lines are taken.
    """
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    marked = [_MARKER.sub("", line) for line in lines if _MARKER.match(line)]
    items = marked if len(marked) >= max(1, len(lines) // 2) else lines
    if len(items) <= 1 and split is not None:
        items = [str(s) for s in split(" ".join(_MARKER.sub("", line) for line in lines))]
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        item = item.strip().strip("*").strip()
        key = " ".join(re.findall(r"\w+", item.lower()))
        if len(key) < 2 or key in seen or item.endswith(":") or not _LETTER.search(item):
            continue
        seen.add(key)
        out.append(item)
    return out


def as_bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)
