"""Quality on qwen2.5-coder-0.5b (`make quality`): each skill at least the raw one-line
baseline on ../shared/eval samples; qa citations and declines. Slow: minutes per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.eval import runners
from assistant.eval.backend import eval_backend
from assistant.eval.data import load_items

# Each test runs the skill and the bare model over a whole set: on a busy 2-core machine that
# can take far longer than the suite's 10-minute default.
pytestmark = [pytest.mark.quality, pytest.mark.timeout(7200)]
MODEL = "qwen2.5-coder-0.5b"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "eval"
DATA = Path(__file__).resolve().parents[1] / "data" / "eval"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not there (shared evaluation samples)")
    return path


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["tatoeba-eng-cmn_Hans.tsv", "tatoeba-eng-fra.tsv"])
async def test_translate_beats_raw_on_chrf(name: str) -> None:
    items = load_items(_need(SHARED / name), limit=40)
    async with eval_backend(load_settings()) as eb:
        skill = await runners.translate(eb, items, MODEL, baseline=False)
        raw = await runners.translate(eb, items, MODEL, baseline=True)
    print(name, "skill", skill.scores, "raw", raw.scores)
    assert skill.scores["chrF"] >= raw.scores["chrF"]


@pytest.mark.asyncio
async def test_summarize_beats_raw_on_rouge_l() -> None:
    items = load_items(_need(SHARED / "xsum-sample.jsonl"))
    async with eval_backend(load_settings()) as eb:
        skill = await runners.summarize(eb, items, MODEL, baseline=False)
        raw = await runners.summarize(eb, items, MODEL, baseline=True)
    print("xsum skill", skill.scores, "raw", raw.scores)
    assert skill.scores["ROUGE-L"] >= raw.scores["ROUGE-L"]


@pytest.mark.asyncio
async def test_qa_cites_the_answer_chunk_and_declines_unanswerable() -> None:
    squad = _need(SHARED / "squad-v1.1-dev-super_bowl_50.json")
    items = load_items(squad, every=8) + load_items(DATA / "qa-unanswerable.jsonl")
    corpus = [str(i["context"]) for i in load_items(squad)]
    async with eval_backend(load_settings()) as eb:
        skill = await runners.qa(eb, items, MODEL, baseline=False, corpus=corpus)
        raw = await runners.qa(eb, items, MODEL, baseline=True)
    print("squad skill", skill.scores, "raw", raw.scores)
    assert skill.scores["F1"] >= raw.scores["F1"]
    assert skill.scores["citation accuracy"] >= 0.9
    assert skill.scores["declined (unanswerable)"] >= 0.8
