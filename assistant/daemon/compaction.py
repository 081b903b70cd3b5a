"""Context budget of a stored conversation: count before generating, compact when it no longer fits.

Before a turn runs, the daemon counts the tokens the model would be given — the system prompt,
the conversation so far (from its last summary in force, see
:func:`assistant.store.records.model_context`), the new message, and room for the reply. When
that exceeds the model's context, the older turns are summarized by the model itself into a
``summary`` message stored in the conversation just above the turns kept verbatim. The user
sees it (a ``summary`` event, and in the transcript), and can undo it
(``POST /api/messages/{id}/undo``); nothing is ever dropped silently.

A summary stands for everything above it, earlier summaries included, so the prompt keeps a
stable prefix from one compaction to the next and the model state stays reusable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from assistant.errors import AssistantError
from assistant.models.backend import Backend, ChatMessage, GenerationParams, closing_stream
from assistant.store.records import Message, model_context

SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
SUMMARY_TOKENS = 256  # the longest summary asked for (an eighth of a small context)
MIN_CONTEXT = 384  # below this there is no room to summarize into
SYSTEM_ALLOWANCE = 96  # a skill's own system prompt and the template's markup
KEEP_FRACTION = 0.5  # the recent turns kept verbatim take at most this share of the context
INSTRUCTION = (
    "Summarize the conversation below for the assistant who continues it. Keep names, "
    "numbers, facts, decisions, the user's preferences and open questions. Write at most "
    "{words} words, in the conversation's language. Reply with the summary only."
)

# (done, total, message) while summarizing: the daemon turns these into progress events.
OnProgress = Callable[[int, int, str], Awaitable[None]]


@dataclass(frozen=True)
class Compacted:
    summary: Message
    covers: int  # messages the summary stands for
    tokens_before: int
    tokens_after: int


def chat_messages(context: Sequence[Message]) -> list[ChatMessage]:
    """The model's view of stored messages: a summary becomes a system note."""
    out: list[ChatMessage] = []
    for m in context:
        if m.role == "summary":
            out.append(ChatMessage("system", SUMMARY_PREFIX + m.content))
        elif m.role in {"user", "assistant", "system"} and m.content:
            out.append(ChatMessage(m.role, m.content))  # type: ignore[arg-type]
    return out


def reply_reserve(n_ctx: int, max_tokens: int | None) -> int:
    """Room kept for the reply: what the client asked for, else a quarter of the context."""
    return min(max_tokens or min(512, n_ctx // 4), n_ctx // 2)


class Compactor:
    """Keeps one conversation inside ``n_ctx`` tokens of ``model``."""

    def __init__(
        self, backend: Backend, model: str, n_ctx: int, *,
        add_summary: Callable[[str, str, int, float], Awaitable[Message]],
        cache_tag: str | None = None,
    ) -> None:
        self.cache_tag = cache_tag  # the conversation's label for the model states it leaves
        self.backend = backend
        self.model = model
        self.n_ctx = n_ctx
        self.add_summary = add_summary  # (before message id, text, tokens, seconds) -> stored
        self.summary_tokens = min(SUMMARY_TOKENS, n_ctx // 8)

    async def count(self, messages: list[ChatMessage]) -> int:
        return await self.backend.count_tokens(self.model, messages) + SYSTEM_ALLOWANCE

    async def fit(
        self, path: Sequence[Message], *, max_tokens: int | None, progress: OnProgress,
    ) -> Compacted | None:
        """Compact ``path`` (root → the new user message) if it does not fit; else None."""
        context = model_context(list(path))
        reserve = reply_reserve(self.n_ctx, max_tokens)
        before = await self.count(chat_messages(context))
        if before + reserve <= self.n_ctx or self.n_ctx < MIN_CONTEXT:
            return None
        start = await self._kept_from(context, reserve)
        if start is None:
            return None  # nothing older to fold away
        covered, kept = context[:start], context[start:]
        # Would the summary and the kept turns fit? If the newest message alone is too long,
        # folding the others away would lose them and fit nothing: leave them.
        floor = await self.count(chat_messages(kept)) + self.summary_tokens + reserve
        if floor > self.n_ctx:
            return None
        started = time.perf_counter()
        text, used = await self._summarize(covered, progress)
        if not text:
            raise CompactionFailed("the model wrote an empty summary of the earlier turns")
        summary = await self.add_summary(kept[0].id, text, used, time.perf_counter() - started)
        after = await self.count(chat_messages([summary, *kept]))
        return Compacted(summary, _covered_count(path, kept[0].id), before, after)

    async def _kept_from(self, context: list[Message], reserve: int) -> int | None:
        """Where the verbatim tail starts: a user message, as early as the budget allows."""
        # At least a quarter of the context, so that a large reply reserve still keeps the
        # last exchange ("shorten that" needs the answer it refers to).
        budget = max(int(self.n_ctx * KEEP_FRACTION) - reserve - self.summary_tokens,
                     self.n_ctx // 4)
        used = 0
        start: int | None = None
        for i in range(len(context) - 1, 0, -1):  # index 0 is never kept: something must go
            used += await self.backend.count_tokens(self.model, chat_messages([context[i]]))
            if used > budget and start is not None:
                break
            if context[i].role == "user":
                start = i
        return start

    async def _summarize(
        self, covered: Sequence[Message], progress: OnProgress,
    ) -> tuple[str, int]:
        """A rolling summary of ``covered``, in parts that each fit the context."""
        room = self.n_ctx - self.summary_tokens * 2 - SYSTEM_ALLOWANCE * 2
        parts = await self._parts(covered, room)
        summary, used = "", 0
        for done, part in enumerate(parts):
            await progress(done, len(parts), "Summarizing older turns to fit the context")
            source = part if not summary else f"Summary so far:\n{summary}\n\nThen:\n{part}"
            prompt = [
                ChatMessage("system", INSTRUCTION.format(words=self.summary_tokens // 2)),
                ChatMessage("user", source),
            ]
            pieces: list[str] = []
            params = GenerationParams(max_tokens=self.summary_tokens, temperature=0.0,
                                      cache_tag=self.cache_tag)
            async with closing_stream(self.backend.chat(self.model, prompt, params)) as stream:
                async for delta in stream:
                    pieces.append(delta.text)
                    used += delta.completion_tokens
            summary = "".join(pieces).strip() or summary
        await progress(len(parts), len(parts), "Summarized older turns")
        return summary, used

    async def _parts(self, covered: Sequence[Message], room: int) -> list[str]:
        """The covered transcript as text, cut into pieces of at most ``room`` tokens."""
        overhead = await self._cost("")  # the template's markup around any text
        room -= overhead
        if room < 32:
            raise CompactionFailed(f"the context ({self.n_ctx} tokens) leaves no room to "
                                   "summarize in")
        parts: list[str] = []
        current: list[str] = []
        size = 0
        for line in _transcript(covered):
            for piece, cost in await self._fitting(line, room, overhead):
                if current and size + cost > room:
                    parts.append("\n".join(current))
                    current, size = [], 0
                current.append(piece)
                size += cost
        if current:
            parts.append("\n".join(current))
        return parts

    async def _fitting(self, text: str, room: int, overhead: int) -> list[tuple[str, int]]:
        """``text`` as it is, or halved (at a space near the middle) until each piece fits."""
        cost = await self._cost(text) - overhead
        if cost <= room or len(text) < 2:
            return [(text, cost)]
        middle = len(text) // 2
        space = text.rfind(" ", middle // 2, middle)
        cut = space if space > 0 else middle
        return [*await self._fitting(text[:cut], room, overhead),
                *await self._fitting(text[cut:], room, overhead)]

    async def _cost(self, text: str) -> int:
        await asyncio.sleep(0)  # a backend that counts without awaiting must not hold the loop
        return await self.backend.count_tokens(self.model, [ChatMessage("user", text)])


class CompactionFailed(AssistantError):
    """The conversation could not be summarized; nothing was stored."""


def _transcript(messages: Sequence[Message]) -> list[str]:
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    lines = []
    for m in messages:
        if m.role == "summary":
            lines.append(f"(Earlier, in summary: {m.content})")
        elif m.content:
            lines.append(f"{names.get(m.role, m.role)}: {m.content}")
    return lines


def _covered_count(path: Sequence[Message], first_kept: str) -> int:
    ids = [m.id for m in path]
    return ids.index(first_kept) if first_kept in ids else 0
