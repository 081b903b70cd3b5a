"""The Skill API and the bundled skills, on the fake model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from assistant_plugins.chat import Chat
from assistant_plugins.qa import QA
from assistant_plugins.summarize import Summarize
from assistant_plugins.translate import Translate, parse_request

from assistant import (
    ChatMessage,
    DeltaEvent,
    Done,
    Event,
    Notice,
    Progress,
    Skill,
    SkillContext,
    Turn,
)
from assistant.errors import RequestError
from assistant.skills import ErrorEvent, execute
from assistant.testing import FakeBackend, fake_context, run_skill_text


def test_chat_uses_history_and_configured_system_prompt() -> None:
    backend = FakeBackend(["Hello there!"])
    ctx = fake_context(backend, history=[ChatMessage("user", "earlier")],
                       config={"system_prompt": "Be terse."})
    text, events = asyncio.run(run_skill_text(Chat(), "hi", ctx))
    assert text == "Hello there!" and events[-1] == Done("complete")
    sent = backend.calls[0]
    assert sent[0] == ChatMessage("system", "Be terse.")
    assert [m.content for m in sent[1:]] == ["earlier", "hi"]


def test_translate_parses_targets_in_several_languages() -> None:
    assert parse_request("de Guten Morgen", command=True)[0] == "de"
    assert parse_request("Translate to French: good morning") == ("fr", "good morning")
    assert parse_request("翻译成英文：早上好") == ("en", "早上好")
    assert parse_request("Übersetze ins Japanische: Hallo")[0] == "ja"


def test_translate_streams_long_text_in_batches_with_progress() -> None:
    body = " ".join(f"Sentence number {i} is here." for i in range(120))
    backend = FakeBackend()
    _text, events = asyncio.run(run_skill_text(Translate(), f"to German: {body}",
                                              fake_context(backend)))
    assert len(backend.calls) > 1 and "German" in backend.calls[0][-1].content
    assert any(isinstance(e, Progress) for e in events)
    assert events[-1] == Done("complete")


def test_summarize_without_text_uses_the_conversation() -> None:
    ctx = fake_context(history=[ChatMessage("user", "we talked about cats")])
    text, _ = asyncio.run(run_skill_text(Summarize(), "summarize our chat", ctx))
    assert "cats" in text
    _, events = asyncio.run(run_skill_text(Summarize(), "summarize our chat"))
    assert isinstance(events[0], Notice)


def test_qa_says_when_no_documents_are_available() -> None:
    _text, events = asyncio.run(run_skill_text(QA(), Turn("what do my notes say?")))
    assert isinstance(events[0], Notice) and "document" in events[0].message
    assert any(isinstance(e, DeltaEvent) for e in events)


def test_chat_merges_a_compaction_summary_into_its_system_prompt() -> None:
    backend = FakeBackend(["ok"])
    ctx = fake_context(backend, history=[ChatMessage("system", "Summary: they met."),
                                         ChatMessage("user", "later")])
    asyncio.run(run_skill_text(Chat(), "hi", ctx))
    sent = backend.calls[0]
    assert [m.role for m in sent] == ["system", "user", "user"]
    assert sent[0].content.endswith("\n\nSummary: they met.")


def test_a_model_refusal_keeps_its_code() -> None:
    class TooLong(Skill):
        name = "too-long"

        async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
            raise RequestError("the prompt takes 900 tokens; the context holds 512",
                               code="context_length_exceeded")
            yield DeltaEvent("")  # pragma: no cover - makes this an async generator

    async def collect() -> list[Event]:
        return [e async for e in execute(TooLong(), Turn(text="x"), fake_context())]

    events = asyncio.run(collect())
    error = next(e for e in events if isinstance(e, ErrorEvent))
    assert error.code == "context_length_exceeded" and "900 tokens" in error.message
    assert events[-1] == Done("error")
