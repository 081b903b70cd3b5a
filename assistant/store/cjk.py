"""Chinese, Japanese and Korean text in full-text search: what the trigram index holds, how a
query is matched against it, and the snippets of what it finds.

FTS5's ``unicode61`` tokenizer keeps a run of Han, kana or Hangul as one token ("大语言模型的评估
指标有哪些" is a single word), so a word inside such a run is never found. Migration 4 adds
``trigram`` FTS5 tables beside the ``unicode61`` ones (``messages_cjk``, ``chunks_cjk``) holding
only the rows with CJK text. A query with CJK in it is matched as substrings: each term of three
characters or more is a trigram phrase (ranked by bm25). The trigram tokenizer matches nothing
shorter ("模型" finds no row, not even a message that is exactly "模型"), and two-character words
are the commonest in Chinese, so terms of one or two characters are substrings checked with
``LIKE`` on the rows: on the phrases' matches when there are phrases, else on the newest
messages or all chunks (50,000 messages, half of them Chinese: 70–100 ms for a full scan).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Han (with 々〆〇 and the compatibility and supplementary planes), kana, Hangul syllables.
RANGES: tuple[tuple[str, str], ...] = (
    ("\u3005", "\u3007"),
    ("\u3040", "\u30ff"),
    ("\u31f0", "\u31ff"),
    ("\u3400", "\u4dbf"),
    ("\u4e00", "\u9fff"),
    ("\uac00", "\ud7af"),
    ("\uf900", "\ufaff"),
    ("\uff66", "\uff9f"),
    ("\U00020000", "\U0003ffff"),
)
_CLASS = "".join(f"{lo}-{hi}" for lo, hi in RANGES)
_CJK = re.compile(f"[{_CLASS}]")
_CJK_RUN = re.compile(f"[{_CLASS}]+")
_SEGMENT = re.compile(rf"[{_CLASS}]+|[^\W{_CLASS}]+")
SHORTEST_PHRASE = 3  # the trigram tokenizer matches no shorter phrase
SNIPPET_CHARS = 48
_RUN_BEFORE = 12  # characters of context kept before the first match in a snippet


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def without_cjk(text: str) -> str:
    """``text`` with its CJK runs replaced by spaces."""
    return _CJK_RUN.sub(" ", text)


def glob_class() -> str:
    """The SQL ``GLOB`` character class of :data:`RANGES`, as migration 4 froze it."""
    return f"[{_CLASS}]"


@dataclass(frozen=True)
class Terms:
    """A query's terms: ``phrases`` the trigram index matches, ``short`` ones it cannot."""

    phrases: tuple[str, ...] = ()
    short: tuple[str, ...] = ()

    def match(self, joiner: str = " ") -> str:
        """The phrases as an FTS5 query, all required (``joiner`` ``" OR "`` for any)."""
        return joiner.join(quote(p) for p in self.phrases)

    def all(self) -> tuple[str, ...]:
        return self.phrases + self.short

    def first(self, count: int) -> Terms:
        """At most ``count`` of these terms, phrases (which the index narrows) first."""
        phrases = self.phrases[:max(count, 0)]
        return Terms(phrases, self.short[:max(count - len(phrases), 0)])


def split_terms(terms: list[str]) -> Terms:
    """``terms`` (duplicates dropped, order kept) sorted into phrases and short terms."""
    unique = list(dict.fromkeys(t for t in terms if t))
    return Terms(tuple(t for t in unique if len(t) >= SHORTEST_PHRASE),
                 tuple(t for t in unique if len(t) < SHORTEST_PHRASE))


def question_terms(question: str) -> Terms:
    """A natural-language question's terms for an any-of search: with no spaces to cut at,
    a CJK run gives its trigrams (a run of one or two characters stays whole); other words
    of three characters or more are kept (trigrams match them as substrings)."""
    found: list[str] = []
    for segment in _SEGMENT.findall(question.lower()):
        if not has_cjk(segment):
            if len(segment) >= SHORTEST_PHRASE:
                found.append(segment)
        elif len(segment) < SHORTEST_PHRASE:
            found.append(segment)
        else:
            found.extend(segment[i:i + SHORTEST_PHRASE]
                         for i in range(len(segment) - SHORTEST_PHRASE + 1))
    return split_terms(found)


def quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def like_pattern(term: str) -> str:
    """``%term%`` for ``LIKE … ESCAPE '\\'``: ``_`` is a word character, ``%`` might be."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def snippet(text: str, terms: tuple[str, ...], highlight: tuple[str, str],
            width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` around its first match of ``terms``, every match
    in them wrapped in ``highlight``, ``…`` where text was cut."""
    found = _pattern(terms)
    first = found.search(text) if found else None
    start = 0 if first is None else max(0, first.start() - _RUN_BEFORE)
    if first is not None and len(text) - start < width:
        start = max(0, len(text) - width)
    window = text[start:start + width]
    if found:
        window = found.sub(lambda m: f"{highlight[0]}{m.group(0)}{highlight[1]}", window)
    return ("…" if start else "") + window + ("…" if start + width < len(text) else "")


def _pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    if not terms:
        return None
    longest_first = sorted(set(terms), key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in longest_first), re.IGNORECASE)
