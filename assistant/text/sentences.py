"""Sentence splitting with spaCy's rule-based ``sentencizer`` on a blank pipeline per language.

No trained model is needed (nothing is downloaded): ``spacy.blank(lang)`` gives the language's
tokenizer rules (abbreviations, numbers), the sentencizer splits at sentence punctuation.
Languages whose blank tokenizer needs extra packages (ja, ko, th, vi) use the multi-language
pipeline; CJK full stops are then split on directly, since ``xx`` tokenizes on whitespace.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

# zh's blank tokenizer cuts every character, breaking "3.5" and "Dr." in mixed text; the
# multi-language tokenizer plus an explicit CJK split keeps both.
_USE_MULTI = {"zh", "ja", "ko", "th", "vi", "und", ""}
_CJK_END = re.compile(r"(?<=[。！？；])(?![”」』)）])")
_PARAGRAPH = re.compile(r"\n\s*\n")
_lock = threading.Lock()
MAX_SPACY_CHARS = 200_000  # spaCy's limit is 1,000,000; paragraphs are fed one by one anyway


@lru_cache(maxsize=16)
def _pipeline(lang: str) -> Any:
    import spacy

    code = "xx" if lang in _USE_MULTI else lang
    try:
        nlp = spacy.blank(code)
    except (ImportError, KeyError, ValueError, OSError):  # unknown code or missing extra
        nlp = spacy.blank("xx")
    nlp.add_pipe("sentencizer")
    nlp.max_length = MAX_SPACY_CHARS + 1
    return nlp


def pipeline(lang: str | None) -> Any:
    """The cached blank pipeline with a sentencizer for ``lang`` (ISO 639-1)."""
    with _lock:
        return _pipeline((lang or "").lower().split("-")[0])


def sentences(text: str, lang: str | None = None) -> list[str]:
    """``text`` split into sentences, in order; blank lines always end a sentence."""
    nlp = pipeline(lang)
    out: list[str] = []
    for block in _PARAGRAPH.split(text):
        block = block.strip()
        while block:
            piece, block = block[:MAX_SPACY_CHARS], block[MAX_SPACY_CHARS:]
            for sent in nlp(piece).sents:
                for part in _CJK_END.split(sent.text):
                    if part.strip():
                        out.append(part.strip())
    return out
