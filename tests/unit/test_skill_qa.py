"""qa on the fake model: citations with sources, declining when nothing is found."""

from __future__ import annotations

from typing import Any

import pytest
from assistant_plugins.qa import DECLINE, QA

from assistant.skills import Turn
from assistant.testing import FakeBackend, fake_context, run_skill_text


class Docs:
    def __init__(self, hits: list[dict[str, Any]]) -> None:
        self.hits = hits

    async def search(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        return self.hits[:k]


HITS = [
    {"text": "The warranty lasts two years.", "document": "manual.pdf", "location": "p. 3",
     "source": "manual.pdf, p. 3"},
    {"text": "The office is in London.", "document": "notes.md", "location": "line 4",
     "source": "notes.md, line 4"},
]


@pytest.mark.asyncio
async def test_answer_keeps_model_citations_and_lists_sources() -> None:
    ctx = fake_context(FakeBackend(["It lasts two years [1]."]))
    ctx.documents = Docs(HITS)
    text, _ = await run_skill_text(QA(), Turn("How long is the warranty?"), ctx)
    assert text == "It lasts two years [1].\n\nSources:\n[1] manual.pdf, p. 3"


@pytest.mark.asyncio
async def test_uncited_answer_gets_the_overlapping_source() -> None:
    backend = FakeBackend(["The office is in London."])
    ctx = fake_context(backend)
    ctx.documents = Docs(HITS)
    text, _ = await run_skill_text(QA(), Turn("Where is the office?"), ctx)
    assert "London. [2]" in text and "[2] notes.md, line 4" in text
    assert "[1] (manual.pdf, p. 3) The warranty" in backend.calls[0][-1].content


@pytest.mark.asyncio
async def test_nothing_found_declines_without_asking_the_model() -> None:
    backend = FakeBackend()
    ctx = fake_context(backend)
    ctx.documents = Docs([])
    text, _ = await run_skill_text(QA(), Turn("Who won the 1998 World Cup?"), ctx)
    assert text.startswith(DECLINE) and backend.calls == []


@pytest.mark.asyncio
async def test_model_decline_gets_no_sources() -> None:
    ctx = fake_context(FakeBackend([DECLINE]))
    ctx.documents = Docs(HITS)
    text, _ = await run_skill_text(QA(), Turn("What is the CEO's name?"), ctx)
    assert text == DECLINE
