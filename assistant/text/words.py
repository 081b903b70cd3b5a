"""Words for matching text against text: lower case; a Han, kana or Hangul character is a word
of its own (those scripts put no spaces between words), any other run of letters and digits
is one word."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from typing import Any

_CJK = "\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")

def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) of each word of ``text``, as :func:`words` cuts them, in place."""
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


# Snowball's stemmers of the languages the detector names (ISO 639-1 → Snowball's name).
_SNOWBALL = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "it": "italian",
             "pt": "portuguese", "nl": "dutch", "ru": "russian", "sv": "swedish",
             "da": "danish", "nb": "norwegian", "fi": "finnish", "hu": "hungarian",
             "ro": "romanian", "tr": "turkish", "el": "greek", "pl": "polish", "cs": "czech",
             "id": "indonesian", "ar": "arabic", "hi": "hindi"}
# A Snowball stemmer keeps its working state on itself: one word at a time, whatever thread.
_STEMMING = threading.Lock()


@functools.cache
def _stemmer(lang: str) -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer(_SNOWBALL[lang])  # every one is in Snowball >= 3.1


@functools.lru_cache(maxsize=1 << 16)
def _stem(lang: str, word: str) -> str:
    with _STEMMING:
        return str(_stemmer(lang).stemWord(word))


def stems(found: Iterable[str], lang: str | None) -> list[str]:
    """``found`` (words, as :func:`words` gives them) cut to their stems by the Snowball
    stemmer of ``lang`` ("pylons" and "pylon" → "pylon", "announced" and "announcer" →
    "announc"), so that a question matches a passage writing another form of its words; as
    they are for a language without one (Chinese, Japanese: a character is a word). Each
    word is stemmed once per process (a cache): Snowball is pure Python."""
    if lang not in _SNOWBALL:
        return list(found)
    return [_stem(lang, w) for w in found]
