"""translate on the fake model: request parsing, Markdown kept, batching, glossary, bad input."""

from __future__ import annotations

import pytest
from assistant_plugins.markdown import split_markdown
from assistant_plugins.translate import (
    Translate,
    UnknownLanguage,
    build_messages,
    language_code,
    parse_request,
)

from assistant.skills import DeltaEvent, Notice, Progress, Turn
from assistant.testing import FakeBackend, fake_context, run_skill_text


@pytest.mark.parametrize(("text", "target", "body"), [
    ("Translate this into French: good morning", "fr", "good morning"),
    ("How do you say 'thank you' in Japanese?", "ja", "thank you"),
    ("把这句话翻译成英文：我爱你", "en", "我爱你"),
    ("翻译成日语：我明天去东京", "ja", "我明天去东京"),
    ("中译英：我很高兴认识你", "en", "我很高兴认识你"),
    ("Übersetze ins Englische: Wie spät ist es?", "en", "Wie spät ist es?"),
    ("Bitte auf Deutsch: good night", "de", "good night"),
    ("Traduce al inglés: buenos días", "en", "buenos días"),
    ("Traduis en espagnol : je suis fatigué", "es", "je suis fatigué"),
    ("Translate into Spanish the weather is nice", "es", "the weather is nice"),
    ("English to Chinese: see you soon", "zh", "see you soon"),
    ("この文を英語に翻訳して：おはよう", "en", "おはよう"),
    ("The weather is nice", None, "The weather is nice"),
])
def test_parse_request(text: str, target: str | None, body: str) -> None:
    request = parse_request(text)
    assert (request.target, request.body) == (target, body)


def test_command_code_prefix_only_for_explicit_commands() -> None:
    assert parse_request("de Hello there", command=True).target == "de"
    assert parse_request("it is raining").target is None
    with pytest.raises(UnknownLanguage):
        parse_request("xq hello", command=True)
    with pytest.raises(UnknownLanguage):
        parse_request("Translate to Klingon: hello")


def test_language_names_in_several_languages() -> None:
    assert [language_code(n) for n in ("Französisch", "Deutsche", "español", "中文", "fr")] == [
        "fr", "de", "es", "zh", "fr"]


def test_prompt_names_target_in_english_and_natively_with_examples_and_glossary() -> None:
    messages = build_messages("Deploy the widget", "en", "fr", {"widget": "bidule"})
    assert "French (français)" in messages[0].content
    assert "widget → bidule" in messages[0].content
    assert [m.role for m in messages[1:]] == ["user", "assistant", "user", "assistant", "user"]


def test_markdown_parts_keep_code_blocks_and_prefixes_out_of_the_model() -> None:
    parts = split_markdown("# Title\n\n- see `x` at https://a.b/c\n```\ncode here\n```")
    assert [(p.prefix, p.text, p.translate) for p in parts] == [
        ("# ", "Title", True), ("", "", False), ("- ", "see ⟦1⟧ at ⟦2⟧", True),
        ("", "```", False), ("", "code here", False), ("", "```", False)]


@pytest.mark.asyncio
async def test_structure_code_and_placeholders_come_back() -> None:
    backend = FakeBackend(["Translation: Bonjour ⟦1⟧ à 10 h.", "Titre", "Fin."])
    text, events = await run_skill_text(Translate(), Turn(
        "Translate to French:\nHello `x` at 10.\n\n# Title\n\n```py\nprint(1)\n```\nThe end."),
        fake_context(backend))
    assert text == "Bonjour `x` à 10 h.\n\n# Titre\n\n```py\nprint(1)\n```\nFin."
    assert not [e for e in events if isinstance(e, Notice)]
    assert all("print(1)" not in m.content for call in backend.calls for m in call)


@pytest.mark.asyncio
async def test_dropped_placeholder_is_restored_and_reported() -> None:
    backend = FakeBackend(["Voir le site."])
    text, events = await run_skill_text(
        Translate(), Turn("Translate to French: see https://example.org now"),
        fake_context(backend))
    assert "https://example.org" in text
    assert any(isinstance(e, Notice) and "example.org" in e.message for e in events)


@pytest.mark.asyncio
async def test_glossary_in_prompt_and_checked() -> None:
    backend = FakeBackend(["Le truc est prêt."])
    ctx = fake_context(backend, config={"glossary": {"widget": "bidule"}})
    _, events = await run_skill_text(Translate(), Turn("Translate to French: the widget is ready"),
                                     ctx)
    assert "widget → bidule" in backend.calls[0][0].content
    assert any(isinstance(e, Notice) and "bidule" in e.message for e in events)


@pytest.mark.asyncio
async def test_long_text_is_batched_in_order_with_progress() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(120)]
    ctx = fake_context(FakeBackend(), config={"context_tokens": 512})
    text, events = await run_skill_text(Translate(), Turn("Translate to German: "
                                                          + " ".join(sentences)), ctx)
    progress = [e for e in events if isinstance(e, Progress)]
    assert len(progress) > 3 and progress[-1].done == progress[-1].total
    assert text.index("number 3 ") < text.index("number 50 ") < text.index("number 119 ")


@pytest.mark.asyncio
async def test_default_target_and_alternate_when_already_in_it() -> None:
    backend = FakeBackend(["x", "y"])
    ctx = fake_context(backend, config={"default_target": "fr"})
    await run_skill_text(Translate(), Turn("Das Wetter ist heute schön."), ctx)
    await run_skill_text(Translate(), Turn("Le temps est beau aujourd'hui."), ctx)
    assert "French" in backend.calls[0][0].content
    assert "into Chinese" in backend.calls[1][0].content


@pytest.mark.parametrize("request_text", ["Translate to Klingon: hello", ""])
@pytest.mark.asyncio
async def test_bad_requests_get_a_clear_message(request_text: str) -> None:
    text, events = await run_skill_text(Translate(), Turn(request_text or " "))
    notices = [e for e in events if isinstance(e, Notice)]
    assert notices and not text
    assert "Klingon" in notices[0].message or "Nothing to translate" in notices[0].message


@pytest.mark.asyncio
async def test_streams_in_pieces() -> None:
    _, events = await run_skill_text(Translate(), Turn(
        "Translate to French: a fairly long sentence that the fake model echoes back"))
    assert len([e for e in events if isinstance(e, DeltaEvent)]) > 2
