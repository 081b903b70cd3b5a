"""Keeping a small model's loops out of replies.

A 0.5B model asked for bullets about a long text can repeat the same line until the token limit.
:class:`LoopGuard` sits between the model's stream and the user: text streams through as it
comes, except that a line is held back while it could still be a repeat of an earlier one, and a
line that turns out to be one ends the reply there (``looped``). The skill stops generating and
may retry with llama.cpp's penalties (:func:`penalized`) when nothing was shown yet.
"""

from __future__ import annotations

import re

from assistant import GenerationParams

# Enough to break "A / B / C / A / B / C…", mild enough that a summary may still repeat the
# names it is about.
REPEAT_PENALTY = 1.15
FREQUENCY_PENALTY = 0.3
# A unit with a letter or digit repeated in a row, three times when it is 8 characters or
# more ("Transformer / BERT / " × 3), eight times when shorter ("1." × 8, "模型" × 8).
_RUN = re.compile(r"((?=.{0,7}\w).{8,}?)\1{2,}|((?=.{0,6}\w).{1,7}?)\2{7,}", re.S)


def _key(line: str) -> str:
    """What makes two lines the same: their words, without list markers, case or spacing."""
    line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line)
    return " ".join(re.findall(r"\w+", line.lower()))


class LoopGuard:
    """``feed(piece)`` returns the text that may be shown now; ``finish()`` the rest.

    After ``looped`` turns true, ``feed`` returns nothing more: the caller stops generating.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.shown = ""
        self.looped = False
        self._line = ""  # the current, unfinished line: shown up to ``_out``
        self._out = 0

    def feed(self, piece: str) -> str:
        if self.looped:
            return ""
        out: list[str] = []
        for part in re.split(r"(\n)", piece):
            if part == "\n":
                out.append(self._end_line())
                if self.looped:
                    break
            elif part:
                self._line += part
                out.append(self._release())
                if self.looped:
                    break
        text = "".join(out)
        self.shown += text
        return text

    def finish(self) -> str:
        if self.looped:
            return ""
        text = self._end_line(final=True)
        self.shown += text
        return text

    def _release(self) -> str:
        """The part of the current line that can no longer turn into a repeat."""
        if _RUN.search(self._line):
            self.looped = True
            cut = _RUN.search(self._line)
            assert cut is not None
            keep = self._line[:cut.start() + len(cut.group(1) or cut.group(2))]
            text = keep[self._out:] if len(keep) > self._out else ""
            self._out = len(self._line)
            return text
        key = _key(self._line)
        if key and any(seen.startswith(key) for seen in self.seen):
            return ""  # so far the same words as an earlier line: wait
        text = self._line[self._out:]
        self._out = len(self._line)
        return text

    def _end_line(self, final: bool = False) -> str:
        key = _key(self._line)
        if key and key in self.seen:
            self.looped = True
            return ""
        if key:
            self.seen.add(key)
        text = self._line[self._out:] + ("" if final else "\n")
        self._line, self._out = "", 0
        return text


def repeats_a_line(text: str, times: int = 3) -> bool:
    """Whether some line of ``text`` (its words) occurs ``times`` times or more."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        key = _key(line)
        if key:
            counts[key] = counts.get(key, 0) + 1
            if counts[key] >= times:
                return True
    return bool(_RUN.search(text))


def penalized(params: GenerationParams) -> GenerationParams:
    """``params`` with the loop-breaking penalties, for a retry."""
    from dataclasses import replace

    return replace(params, repeat_penalty=REPEAT_PENALTY, frequency_penalty=FREQUENCY_PENALTY)
