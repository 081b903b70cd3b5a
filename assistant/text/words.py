"""Words for matching text against text: lower case; a Han, kana or Hangul character is a word
of its own (those scripts put no spaces between words), any other run of letters and digits
is one word. Stop words of the languages the detector knows, to tell evidence from glue."""

from __future__ import annotations

import re

from assistant.text.language import STOP_WORDS

_CJK = "\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")

__all__ = ["STOP_WORDS", "words"]


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())
