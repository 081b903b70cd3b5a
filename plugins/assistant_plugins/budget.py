"""Token budgets without a tokenizer: a conservative estimate, and batching to fit it.

Skills see no tokenizer, so they count UTF-8 bytes: a BPE token of the models we ship covers
about 4 bytes of English and 3 of Chinese (one character); counting one token per 2 bytes
overestimates both, so a batch that fits by this count fits the real context.
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_CONTEXT = 2048
BYTES_PER_TOKEN = 2.0


def estimate_tokens(text: str) -> int:
    """An upper bound on the tokens of ``text`` for the bundled models."""
    return int(len(text.encode("utf-8")) / BYTES_PER_TOKEN) + 1


def context_tokens(config: dict[str, object], default: int = DEFAULT_CONTEXT) -> int:
    """The context a skill plans for: ``context_tokens`` of its config section, else 2048."""
    value = config.get("context_tokens", default)
    return max(256, int(value)) if isinstance(value, int | float | str) else default


def batches(pieces: Iterable[str], limit_tokens: int, sep: str = " ") -> list[str]:
    """Consecutive ``pieces`` joined into batches of at most ``limit_tokens`` (estimated).

    A single piece over the limit is cut at a space (or anywhere) so no batch exceeds it.
    """
    out: list[str] = []
    size = 0
    for piece in pieces:
        for part in _cut(piece, limit_tokens):
            cost = estimate_tokens(part)
            if out and size + cost <= limit_tokens:
                out[-1] += sep + part
                size += cost
            else:
                out.append(part)
                size = cost
    return out


def clip(text: str, limit_tokens: int) -> str:
    """``text`` cut to at most ``limit_tokens`` (estimated), at a sentence end or a space."""
    if estimate_tokens(text) <= limit_tokens:
        return text
    head = _cut(text, limit_tokens)[0]
    end = max(head.rfind(". "), head.rfind("。"), head.rfind("\n"))
    return head[:end + 1].strip() if end > len(head) // 2 else head


def _cut(text: str, limit_tokens: int) -> list[str]:
    if estimate_tokens(text) <= limit_tokens:
        return [text]
    parts: list[str] = []
    max_bytes = int(limit_tokens * BYTES_PER_TOKEN) - 4
    while text:
        cut = len(text)
        while len(text[:cut].encode("utf-8")) > max_bytes:
            cut = int(cut * 0.8)
        if cut < len(text):
            space = text.rfind(" ", 0, cut)
            cut = space if space > cut // 2 else cut
        parts.append(text[:cut].strip())
        text = text[cut:].strip()
    return [p for p in parts if p]
