"""summarize on the fake model: styles, files, map-reduce within the context, extractive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from assistant_plugins.budget import estimate_tokens
from assistant_plugins.salience import textrank
from assistant_plugins.summarize import Summarize, style_of

from assistant.models.backend import ChatMessage, GenerationParams
from assistant.skills import (
    ErrorEvent,
    Notice,
    Progress,
    SkillContext,
    Turn,
    collect,
    execute,
)
from assistant.testing import FakeBackend, fake_context, run_skill_text


def test_styles_from_the_request() -> None:
    assert style_of("Summarize in three bullet points: ...") == "bullets"
    assert style_of("用一句话总结下面的文字") == "one line"
    assert style_of("Summarize this") == "paragraph"


@pytest.mark.asyncio
async def test_long_input_is_map_reduced_with_progress_within_the_context() -> None:
    text = " ".join(f"Paragraph {i} describes event number {i} in some detail." for i in
                    range(1500))
    backend = FakeBackend(["A partial summary."] * 200)
    ctx = fake_context(backend, config={"context_tokens": 1024})
    _, events = await run_skill_text(Summarize(), Turn("Summarize", args={"text": text}), ctx,
                                     timeout=60)
    assert sum(isinstance(e, Progress) for e in events) > 10
    assert all(sum(estimate_tokens(m.content) for m in call) <= 1024 for call in backend.calls)


@pytest.mark.asyncio
async def test_summarizes_a_local_file_and_reports_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    path.write_text("# Report\n\nSales rose by 10 percent in March.")
    backend = FakeBackend(["Sales rose."])
    text, _ = await run_skill_text(Summarize(), Turn(f"summarize {path}"), fake_context(backend),
                                   timeout=60)
    assert text == "Sales rose." and "10 percent" in backend.calls[0][-1].content
    _, events = await run_skill_text(Summarize(), Turn(f"summarize {tmp_path}/missing.txt"),
                                     timeout=60)
    assert any(isinstance(e, Notice) and "no such file" in e.message for e in events)


@pytest.mark.asyncio
async def test_files_are_read_only_for_the_unix_socket_and_by_absolute_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x").write_text("secret notes")
    (tmp_path / "notes.txt").write_text("secret notes")
    monkeypatch.chdir(tmp_path)  # the daemon's working directory
    for text in ("summarize ./x", "summarize /etc/hostname", f"summarize {tmp_path}/x"):
        backend = FakeBackend()
        _, events = await run_skill_text(Summarize(), Turn(text),
                                         fake_context(backend, local_files=False))
        error = next(e for e in events if isinstance(e, ErrorEvent))
        assert error.code == "unsupported_input" and "never over TCP" in error.message, text
        assert backend.calls == []
    # Over the Unix socket: a relative path is the caller's, whose directory the daemon does
    # not know; a bare name is not a file of the daemon's directory either.
    _, events = await run_skill_text(Summarize(), Turn("summarize ./x"), fake_context())
    error = next(e for e in events if isinstance(e, ErrorEvent))
    assert "absolute path" in error.message and error.code == "unsupported_input"
    backend = FakeBackend(["Short."])
    await run_skill_text(Summarize(), Turn("summarize notes.txt"), fake_context(backend))
    assert not any("secret notes" in m.content for call in backend.calls for m in call)


@pytest.mark.asyncio
async def test_extractive_needs_no_model_and_keeps_order() -> None:
    backend = FakeBackend()
    sentences = [f"Cats are animals number {i}." for i in range(30)] + ["Stocks fell today."]
    text, _ = await run_skill_text(Summarize(), Turn("extractive summary", args={
        "text": " ".join(sentences), "style": "paragraph"}), fake_context(backend), timeout=60)
    assert backend.calls == [] and text.count(".") == 3 and "Stocks" not in text


def test_textrank_prefers_central_vectors() -> None:
    ranks = textrank([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0]])
    assert ranks.index(min(ranks)) == 3


@pytest.mark.asyncio
async def test_map_reduce_ends_however_wordy_the_partial_summaries() -> None:
    text = " ".join(f"Sentence {i} says something about topic {i}." for i in range(400))
    backend = FakeBackend(["Extraordinarily " * 500] * 400)
    ctx = fake_context(backend, config={"context_tokens": 256})
    _, events = await run_skill_text(Summarize(), Turn("Summarize", args={"text": text}), ctx,
                                     timeout=60)
    rounds = [e for e in events if isinstance(e, Progress) and e.message == "combining"]
    assert events[-1].status == "complete" and 2 <= len(rounds) <= 8
    assert all(sum(estimate_tokens(m.content) for m in call) <= 256 for call in backend.calls)


class CountingBackend(FakeBackend):
    """The fake model with a known context and a tokenizer: one token per word, 4 a message."""

    def __init__(self, replies: list[str], context: int) -> None:
        super().__init__(replies)
        self.context = context

    async def count_tokens(self, model: str, messages: list[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)

    async def context_length(self, model: str) -> int | None:
        return self.context


ARTICLE = " ".join(f"Council member {i} voted for the new bridge on Tuesday." for i in range(60))


@pytest.mark.asyncio
async def test_a_text_that_fits_the_real_context_is_summarized_in_one_pass() -> None:
    assert estimate_tokens(ARTICLE) > 2048 * 0.55  # the byte estimate would chunk it
    backend = CountingBackend(["The council backed the bridge."], context=4096)
    text, events = await run_skill_text(
        Summarize(), Turn("Summarize", args={"text": ARTICLE}), fake_context(backend),
        timeout=60)
    assert text == "The council backed the bridge."
    assert len(backend.calls) == 1 and backend.calls[0][-1].content == ARTICLE
    assert not [e for e in events if isinstance(e, Progress)]


@pytest.mark.asyncio
async def test_a_text_over_the_real_context_is_map_reduced_with_progress() -> None:
    backend = CountingBackend(["A partial summary."] * 50, context=512)  # ARTICLE: ~600 words
    _, events = await run_skill_text(
        Summarize(), Turn("Summarize", args={"text": ARTICLE}), fake_context(backend),
        timeout=60)
    assert len(backend.calls) > 2 and backend.calls[0][-1].content != ARTICLE
    assert any(isinstance(e, Progress) and e.message == "combining" for e in events)


@pytest.mark.asyncio
async def test_a_configured_context_tokens_caps_the_one_pass_prompt() -> None:
    backend = CountingBackend(["A partial summary."] * 50, context=4096)
    ctx = fake_context(backend, config={"context_tokens": 512})
    await run_skill_text(Summarize(), Turn("Summarize", args={"text": ARTICLE}), ctx, timeout=60)
    assert len(backend.calls) > 2
    assert all(sum(estimate_tokens(m.content) for m in call) <= 512 for call in backend.calls)


class PlainContext(SkillContext):
    """A third-party context that implements only the abstract methods."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.inner = fake_context(backend)
        self.history, self.documents, self.config = [], None, {}

    def generate(self, messages: Sequence[ChatMessage], params: GenerationParams | None = None,
                 model: str | None = None) -> AsyncIterator[str]:
        return self.inner.generate(messages, params, model)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.inner.embed(texts)

    def sentences(self, text: str, lang: str | None = None) -> list[str]:
        return self.inner.sentences(text, lang)

    def detect_language(self, text: str) -> str:
        return self.inner.detect_language(text)


@pytest.mark.asyncio
async def test_a_context_that_cannot_count_keeps_the_map_reduce_plan() -> None:
    ctx = PlainContext(FakeBackend(["A partial summary."] * 50))
    assert await ctx.context_length() is None
    assert await ctx.count_tokens([ChatMessage("user", ARTICLE)]) >= estimate_tokens(ARTICLE)
    _, events = await collect(execute(
        Summarize(), Turn("Summarize", args={"text": ARTICLE}), ctx, 60))
    assert len(ctx.backend.calls) > 2
    assert any(isinstance(e, Progress) and e.message == "combining" for e in events)
    # A BackendContext on a backend that cannot tell its context plans the same way.
    backend = FakeBackend(["A partial summary."] * 50)
    await run_skill_text(Summarize(), Turn("Summarize", args={"text": ARTICLE}),
                         fake_context(backend), timeout=60)
    assert len(backend.calls) == len(ctx.backend.calls)


@pytest.mark.asyncio
async def test_candidates_keep_the_one_line_summary_closest_to_the_others() -> None:
    """[skills.summarize] candidates: the greedy summary and sampled ones, the one sharing
    most with the rest by ROUGE-L kept (a minimum-Bayes-risk choice)."""
    backend = CountingBackend(["Bridge closed.",
                               "The council closed the old bridge for repairs.",
                               "The council closed the bridge for eight months of repairs.",
                               "Shops fear losing customers."], context=4096)
    ctx = fake_context(backend, config={"candidates": 4})
    text, _ = await run_skill_text(Summarize(), Turn(
        "summarize", args={"text": ARTICLE, "style": "one line"}), ctx, timeout=60)
    assert text == "The council closed the old bridge for repairs." and len(backend.calls) == 4


@pytest.mark.asyncio
async def test_a_one_line_summary_asks_after_the_text_and_in_the_language_asked() -> None:
    """One line: the text first, then the plain ask (the prompt chosen on xsum-dev-60); the
    language is named only when it is not the text's."""
    backend = CountingBackend(["The council closed the bridge."], context=4096)
    await run_skill_text(Summarize(), Turn(
        "summarize", args={"text": ARTICLE, "style": "one line"}), fake_context(backend),
        timeout=60)
    user = backend.calls[0][-1].content
    assert user.startswith(ARTICLE[:200])
    assert user.endswith("Summarize the text above in one brief sentence.")
    backend = CountingBackend(["Le conseil a fermé le pont."], context=4096)
    await run_skill_text(Summarize(), Turn(
        "summarize in French", args={"text": ARTICLE, "style": "one line"}),
        fake_context(backend), timeout=60)
    assert backend.calls[0][-1].content.endswith(
        "in one brief sentence. Write it in French (français).")
