"""Words for matching text against text: lower case; a Han, kana or Hangul character is a word
of its own (those scripts put no spaces between words), any other run of letters and digits
is one word."""

from __future__ import annotations

import re

_CJK = "\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")

def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) of each word of ``text``, as :func:`words` cuts them, in place."""
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]
