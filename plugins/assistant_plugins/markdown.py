"""Markdown that survives a model: split into verbatim parts and translatable units.

Fenced code blocks, blank lines and line prefixes (headings, list markers, quotes) never reach
the model. Inside a unit, inline code, URLs and other tokens that must come back unchanged are
swapped for numbered placeholders (``⟦1⟧``) and restored afterwards; :func:`missing` says which
did not come back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"^\s*(```|~~~)")
_PREFIX = re.compile(r"^(\s*(?:#{1,6}\s+|[-*+]\s+(?:\[[ xX]\]\s+)?|\d+[.)]\s+|>\s*)*)")
_PROTECTED = re.compile(
    r"`[^`\n]+`"                                  # inline code
    r"|!?\[[^\]\n]*\]\([^)\s]+\)"                 # Markdown links and images, whole
    r"|<https?://[^>\s]+>"
    r"|\bhttps?://[^\s<>()\"'`]+[^\s<>()\"'`.,;:!?)]"
    r"|\b[\w.+-]+@[\w-]+\.[\w.-]+\b"              # e-mail addresses
)
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
PLACEHOLDER = re.compile(r"⟦(\d+)⟧")


@dataclass
class Part:
    """A verbatim piece (``text`` only) or a unit to translate: ``prefix`` + ``text``."""

    text: str
    translate: bool = False
    prefix: str = ""
    protected: list[str] = field(default_factory=list)


def split_markdown(text: str) -> list[Part]:
    """``text`` as parts, in order; joining every part's output with ``\\n`` rebuilds it."""
    parts: list[Part] = []
    lines = text.split("\n")
    fence: str | None = None
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            parts.append(_unit("", " ".join(s.strip() for s in paragraph)))
            paragraph.clear()

    for line in lines:
        opener = _FENCE.match(line)
        if fence is not None:
            parts.append(Part(line))
            if opener and opener.group(1) == fence:
                fence = None
            continue
        if opener:
            flush()
            fence = opener.group(1)
            parts.append(Part(line))
            continue
        verbatim = line.startswith(("    ", "\t")) or set(line.strip()) <= set("-=*_|: ")
        if not line.strip() or verbatim:
            flush()
            parts.append(Part(line))  # blank, indented code, rules and table separators
            continue
        prefix = _PREFIX.match(line)
        marker = prefix.group(1) if prefix else ""
        if marker.strip() or line.lstrip().startswith("|"):
            flush()
            parts.append(_unit(marker, line[len(marker):]))
        else:
            paragraph.append(line)
    flush()
    return parts


def _unit(prefix: str, text: str) -> Part:
    protected: list[str] = []

    def swap(match: re.Match[str]) -> str:
        protected.append(match.group(0))
        return f"⟦{len(protected)}⟧"

    body = _PROTECTED.sub(swap, text)
    if not body.strip(" ⟦⟧0123456789"):
        return Part(prefix + text)  # nothing but code/URLs: keep verbatim
    return Part(body, translate=True, prefix=prefix, protected=protected)


def restore(text: str, protected: list[str]) -> str:
    """``text`` with every placeholder replaced by what it stands for."""
    def back(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return protected[index] if 0 <= index < len(protected) else ""

    return PLACEHOLDER.sub(back, text)


def missing(output: str, protected: list[str]) -> list[str]:
    """The protected tokens that do not appear in ``output`` (after restoring)."""
    return [token for token in protected if token not in output]


def numbers(text: str) -> list[str]:
    """The numbers in ``text``, as written (``3.5``, ``2024``, ``10:30``)."""
    return _NUMBER.findall(PLACEHOLDER.sub(" ", text))
