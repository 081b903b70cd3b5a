"""Obeying the request: bullet counts, the reply's language, and loops cut before they show."""

from __future__ import annotations

import pytest
from assistant_plugins.repetition import LoopGuard, repeats_a_line
from assistant_plugins.shape import bullet_count, bullet_items
from assistant_plugins.summarize import Summarize

from assistant.skills import Turn
from assistant.testing import FakeBackend, fake_context, run_skill_text

CHINESE = ("大语言模型是一种基于 Transformer 架构的神经网络模型。它们在海量文本上进行预训练，"
           "然后通过微调适应具体任务。BERT 是双向编码器模型，GPT 是自回归解码器模型。"
           "常用的评估指标包括困惑度、BLEU 分数和人工评估。") * 3


@pytest.mark.parametrize(("request_text", "count"), [
    ("Summarize this document in English in three bullet points", 3),
    ("give me 5 bullets", 5),
    ("用三个要点总结这篇文章", 3),
    ("résume en trois points", 3),
    ("Fass den Text in drei Stichpunkten zusammen", 3),
    ("Summarize this in one paragraph", None),
    ("someone points at it", None),
])
def test_the_bullet_count_named_in_the_request(request_text: str, count: int | None) -> None:
    assert bullet_count(request_text) == count


def test_bullets_are_read_from_lists_numbers_or_sentences_without_repeats() -> None:
    assert bullet_items("Summary:\n1. A is big.\n2) B is small.\n- A is big.") == [
        "A is big.", "B is small."]
    assert bullet_items("A is big. B is small.", lambda t: t.split(". ")) == [
        "A is big", "B is small."]


def _stream(text: str, size: int = 4) -> tuple[str, LoopGuard]:
    """``text`` through a guard in pieces of ``size`` characters, as a model sends it."""
    guard = LoopGuard()
    shown = ""
    for i in range(0, len(text), size):
        shown += guard.feed(text[i:i + size])
        if guard.looped:
            break
    return shown + guard.finish(), guard


def test_a_block_of_lines_said_again_ends_the_reply() -> None:
    shown, guard = _stream("- Transformer 模型\n- 预训练与微调\n" * 5)
    assert guard.looped and shown == "- Transformer 模型\n- 预训练与微调\n- Transformer 模型\n"
    assert not repeats_a_line(shown)


def test_a_line_said_a_third_time_is_never_shown() -> None:
    shown, guard = _stream("- A point.\n- Other.\n- A point.\n- Third.\n- A point.\n- Fourth.")
    assert guard.looped and shown.count("A point") == 2 and "Fourth" not in shown


def test_a_phrase_looping_within_a_line_is_cut() -> None:
    shown, guard = _stream("Models: " + "Transformer / BERT / GPT / " * 20)
    assert guard.looped and shown.count("BERT") <= 3


def test_what_only_looks_like_a_loop_streams_whole() -> None:
    for text in ["GPT-3 has 175000000000 parameters and 0xFFFFFFFF.",
                 "| Model | Size |\n|---|---|\n| BERT | 110M |\n| GPT | 117M |",
                 "1. Open Settings.\n2. Press OK.\n3. Choose Wi-Fi.\n4. Press OK.\n5. Done.",
                 "```\nelse:\n    return x\nelse:\n    return x\nelse:\n    return x\n```"]:
        shown, guard = _stream(text)
        assert shown == text and not guard.looped, text


def test_novel_text_streams_as_it_comes() -> None:
    guard = LoopGuard()
    assert guard.feed("The council ") == "The council "
    assert guard.feed("voted.\nThe bridge") == "voted.\nThe bridge"
    assert guard.feed("\n3.") == "\n"  # a bare list marker waits for its words
    assert guard.feed(" Next") == "3. Next"
    assert guard.finish() == "" and not guard.looped


def test_a_long_line_is_checked_in_linear_time() -> None:
    import time

    started = time.perf_counter()
    _stream("word " * 2000 + "".join(f"token{i} " for i in range(2000)), size=3)
    assert time.perf_counter() - started < 5.0


async def three_english_bullets(backend: FakeBackend) -> str:
    """The summary of :data:`CHINESE` asked in English in three bullets, ``backend`` replying."""
    text, _ = await run_skill_text(Summarize(), Turn(
        "Summarize this document in English in three bullet points",
        args={"text": CHINESE}), fake_context(backend), timeout=60)
    return text


@pytest.mark.asyncio
async def test_three_bullets_in_english_however_the_model_answers() -> None:
    """Chinese bullets looping, then too few: the skill asks again in English with penalties
    and ships exactly the three distinct points asked for."""
    backend = FakeBackend([
        "- Transformer 模型\n- 预训练与微调\n- Transformer 模型\n- 预训练与微调\n",
        "- Large language models are Transformer networks.\n- They are pretrained, then "
        "fine-tuned.\n- Large language models are Transformer networks.\n",
        "- BERT is a bidirectional encoder and GPT an autoregressive decoder.\n- They are "
        "evaluated by perplexity, BLEU and human ratings.\n- They are pretrained, then "
        "fine-tuned.\n- A fourth point.\n",
    ])
    lines = (await three_english_bullets(backend)).splitlines()
    assert len(lines) == 3 and all(line.startswith("- ") for line in lines)
    assert len(set(lines)) == 3 and not any("模型" in line for line in lines)
    assert "every bullet in English" in backend.calls[1][0].content  # the retry names it


# The model's points in Chinese, asked for English: then asked again, still in Chinese.
CHINESE_POINTS = [
    "- 大语言模型基于Transformer架构。\n- BERT和GPT是常见的模型。\n- 模型先预训练再微调。\n",
    "- 大语言模型基于Transformer架构。\n- 评估指标包括困惑度。\n",
]


@pytest.mark.asyncio
async def test_points_the_model_keeps_writing_in_another_language_are_translated() -> None:
    """Asked twice for English and answering in Chinese both times: its own points, translated,
    not sentences of the text (nor its headings)."""
    backend = FakeBackend([
        *CHINESE_POINTS,
        "Large language models are built on the Transformer.",
        "BERT and GPT are common models.",
        "Models are pretrained, then fine-tuned.",
    ])
    text = await three_english_bullets(backend)
    assert text.splitlines() == ["- Large language models are built on the Transformer.",
                                 "- BERT and GPT are common models.",
                                 "- Models are pretrained, then fine-tuned."]
    assert len(backend.calls) == 5  # two asks, no third once the language was named


@pytest.mark.asyncio
async def test_a_point_the_model_cannot_translate_gives_way_to_another() -> None:
    """smollm2 once answered a translation with "How to translate:" and the Chinese again:
    that point gives way to another of the model's points, translated, never shipped as is."""
    backend = FakeBackend([
        *CHINESE_POINTS,
        "Large language models are built on the Transformer.",
        "How to translate:\n\nBERT和GPT是常见的模型。\n\nThe translation is:\n\n"
        "BERT和GPT是常见的模型。",
        "Models are pretrained, then fine-tuned.",
        "They are evaluated by perplexity.",
    ])
    text = await three_english_bullets(backend)
    assert text.splitlines() == ["- Large language models are built on the Transformer.",
                                 "- Models are pretrained, then fine-tuned.",
                                 "- They are evaluated by perplexity."]


@pytest.mark.parametrize("request_text", [
    "请简短一点总结", "Summarize the two bulletins below", "会议在下午三点开始", "2.5 points"])
def test_no_bullet_count_where_none_is_asked(request_text: str) -> None:
    assert bullet_count(request_text) is None


@pytest.mark.asyncio
async def test_a_count_in_the_pasted_text_is_not_a_request() -> None:
    backend = FakeBackend(["The Lakers won."])
    text, _ = await run_skill_text(Summarize(), Turn(
        "Summarize: The Lakers won as James scored 8 points in the last quarter."),
        fake_context(backend), timeout=60)
    assert text == "The Lakers won." and "bullet" not in backend.calls[0][0].content
