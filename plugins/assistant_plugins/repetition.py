"""Keeping a small model's loops out of replies.

A 0.5B model asked for bullets about a long text can repeat the same lines until the token
limit. :class:`LoopGuard` sits between the model's stream and the user: text streams through as
it comes, and a loop ends the reply where it starts (``looped``). The skill stops generating,
says so, and retries with llama.cpp's penalties (:func:`penalized`) when nothing was shown yet.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from assistant import ChatMessage, GenerationParams, Notice, SkillContext
from assistant.models.backend import closing_stream

CUT = Notice("The model began repeating itself; its reply was cut there.", "info")

# Enough to break "A / B / C / A / B / C…", mild enough that a summary may still repeat the
# names it is about.
REPEAT_PENALTY = 1.15
FREQUENCY_PENALTY = 0.3
# A phrase with a letter in it repeated in a row within a line: three times when it is 8 to 80
# characters ("Transformer / BERT / " × 3), six when 2 to 7 ("模型" × 6). Numbers, rules and
# table rows ("175000000000", "-----", "| x | x |") have no letter in the unit, and are left be.
_RUN = re.compile(r"((?=[^\n]{0,79}[^\W\d_])[^\n]{8,80}?)\1{2,}"
                  r"|((?=\s*[^\W\d_])(?:[^\W\d_]|[ \t]){2,7}?)\2{5,}")
_TAIL = 480  # a loop fits here three times over; searching more would only cost time
_MARKER = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s*")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def _key(line: str) -> str:
    """What makes two lines the same: their words, without list markers, case or spacing."""
    return " ".join(re.findall(r"\w+", _MARKER.sub("", line).lower()))


class LoopGuard:
    """``feed(piece)`` returns the text that may be shown now; ``finish()`` the rest.

    A loop is a line said a third time, a block of two to four lines said again right after
    itself, or a phrase repeating within a line; ``looped`` then turns true and ``feed``
    returns nothing more: the caller stops generating. A line is held back while it could
    still be a third time, and while it is only a list marker. Lines in fenced code may repeat.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lines: list[str] = []  # keys of the finished lines, code excepted
        self.shown = ""
        self.looped = False
        self._line = ""  # the current, unfinished line: shown up to ``_out``
        self._out = 0
        self._fence = ""

    def feed(self, piece: str) -> str:
        if self.looped:
            return ""
        out: list[str] = []
        for part in re.split(r"(\n)", piece):
            if part == "\n":
                out.append(self._end_line())
            elif part:
                self._line += part
                out.append(self._release(len(part)))
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

    def _release(self, added: int) -> str:
        """The part of the current line that can no longer turn into a loop."""
        if self._fence:
            return self._take(len(self._line))
        start = max(0, len(self._line) - added - _TAIL)
        cut = _RUN.search(self._line, start)
        if cut is not None:
            self.looped = True
            return self._take(cut.start() + len(cut.group(1) or cut.group(2)))
        key = _key(self._line)
        if not key:
            return ""  # only a marker so far: "3." may yet be a loop's
        if any(n >= 2 and seen.startswith(key) for seen, n in self.counts.items()) or \
                any(line.startswith(key) for line in _block_ends(self.lines)):
            return ""  # so far the words of a third time, or of a block said again: wait
        return self._take(len(self._line))

    def _take(self, end: int) -> str:
        text = self._line[self._out:end] if end > self._out else ""
        self._out = max(self._out, end)
        return text

    def _end_line(self, final: bool = False) -> str:
        fence = _FENCE.match(self._line)
        if fence and (not self._fence or fence.group(1) == self._fence):
            self._fence = "" if self._fence else fence.group(1)
        elif not self._fence and (key := _key(self._line)):
            self.counts[key] = self.counts.get(key, 0) + 1
            self.lines.append(key)
            if self.counts[key] >= 3 or _block_repeats(self.lines):
                self.looped = True
                return ""
        text = self._line[self._out:] + ("" if final else "\n")
        self._line, self._out = "", 0
        return text


def _block_ends(lines: list[str]) -> list[str]:
    """The lines that, said next, would end a block of 2 to 4 lines said again."""
    return [lines[-n] for n in range(2, 5)
            if len(lines) >= 2 * n - 1 and lines[len(lines) - n + 1:] == lines[-2 * n + 1:-n]]


def _block_repeats(lines: list[str]) -> bool:
    """Whether the last 2 to 4 lines are the same as the ones just before them."""
    return any(len(lines) >= 2 * n and lines[-n:] == lines[-2 * n:-n] for n in range(2, 5))


async def guarded(stream: AsyncIterator[str], guard: LoopGuard) -> AsyncIterator[str]:
    """The text of ``stream`` that ``guard`` lets through; the stream (and the generation
    behind it) is closed as soon as a loop starts."""
    async with closing_stream(stream) as pieces:
        async for piece in pieces:
            shown = guard.feed(piece)
            if shown:
                yield shown
            if guard.looped:
                return
    rest = guard.finish()
    if rest:
        yield rest


async def generate_text(ctx: SkillContext, prompt: list[ChatMessage],
                        params: GenerationParams, guard: LoopGuard | None = None) -> str:
    """The whole reply, cut where it starts to loop."""
    guard = guard or LoopGuard()
    return "".join([piece async for piece in guarded(ctx.generate(prompt, params), guard)])


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
