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


def test_a_repeated_line_is_held_back_and_ends_the_reply() -> None:
    guard = LoopGuard()
    shown = "".join(guard.feed(p) for p in [
        "- Trans", "former 模型\n- 预训", "练与微调\n- Trans", "former 模型\n- 预训练与微调\n"])
    shown += guard.finish()
    assert shown == "- Transformer 模型\n- 预训练与微调\n" and guard.looped
    assert not repeats_a_line(shown)


def test_a_phrase_looping_within_a_line_is_cut_after_its_first_time() -> None:
    guard = LoopGuard()
    shown = guard.feed("Models: " + "Transformer / BERT / GPT / " * 6) + guard.finish()
    assert guard.looped and shown.count("BERT") == 1


def test_novel_text_streams_as_it_comes() -> None:
    guard = LoopGuard()
    assert guard.feed("The council ") == "The council "
    assert guard.feed("voted.\nThe bridge") == "voted.\nThe bridge"
    assert guard.finish() == "" and not guard.looped


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
    text, _ = await run_skill_text(Summarize(), Turn(
        "Summarize this document in English in three bullet points",
        args={"text": CHINESE}), fake_context(backend), timeout=60)
    lines = text.splitlines()
    assert len(lines) == 3 and all(line.startswith("- ") for line in lines)
    assert len(set(lines)) == 3 and not any("模型" in line for line in lines)
    assert "English" in backend.calls[1][-1].content  # the retry names the language
