"""The sentence of a cited passage that supports the answer, for qa's citations.

The method is meant to be explained in one line: of the passage's sentences (``ctx.sentences``,
spaCy's rules), the one sharing the most content words with the answer (words that are not stop
words, compared as SQuAD normalises them); a tie goes to the one sharing more of the
question's other words, then to the earlier one. A passage with no sentence sharing a word with
either has no supporting sentence.
"""

from __future__ import annotations

from collections.abc import Callable

from assistant.eval.metrics import normalize_answer
from assistant.text import STOP_WORDS, words


def content_words(text: str) -> set[str]:
    return {w for w in words(normalize_answer(text)) if w not in STOP_WORDS}


def supporting(passage: str, answer: str, question: str,
               split: Callable[[str], list[str]]) -> tuple[str, tuple[int, int] | None] | None:
    """The sentence of ``passage`` (split by ``split``) that supports ``answer`` to
    ``question``, and its start and end in ``passage`` (None when the splitter changed its
    text); None when no sentence shares a word with the answer or the question."""
    said = content_words(answer)
    asked = content_words(question) - said
    best: tuple[int, int] = (0, 0)
    found: str | None = None
    for sentence in split(passage):
        have = content_words(sentence)
        score = (len(have & said), len(have & asked))
        if score > best:
            best, found = score, sentence
    if found is None:
        return None
    start = passage.find(found)
    return found, (start, start + len(found)) if start >= 0 else None
