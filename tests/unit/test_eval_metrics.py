"""assistant.eval: the metrics against hand-computed values, the data loaders, and how the
runners ask (how many at once; the bare model's reply cap)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from assistant.eval import metrics
from assistant.eval.data import EvalDataError, load_items

DATA = Path(__file__).resolve().parents[1] / "data" / "eval"


def test_rouge_l_by_word_and_by_character() -> None:
    assert metrics.rouge_l("the cat sat", "the cat sat on") == pytest.approx(6 / 7)
    assert metrics.rouge_l("我爱你。", "我爱他", "zh") == pytest.approx(2 / 3)
    assert metrics.rouge_l("", "x") == 0.0


def test_squad_normalisation_em_and_f1() -> None:
    assert metrics.exact_match("The Denver Broncos.", ["Denver Broncos"]) == 1.0
    assert metrics.f1("Denver", ["Denver Broncos"]) == pytest.approx(2 / 3)
    assert metrics.f1("nothing", ["Denver Broncos"]) == 0.0


def test_bleu_chrf_and_chinese_tokenizer() -> None:
    assert metrics.chrf(["Bonjour le monde"], ["Bonjour le monde"]) == pytest.approx(100)
    assert metrics.bleu(["我在学西班牙语。"], ["我在学西班牙语。"], "zh") == pytest.approx(100)
    assert metrics.bleu(["我在学西班牙语。"], ["我在学西班牙语。"], "en") < 100


def test_citations_and_declines() -> None:
    assert metrics.cited("A [2] and [1], again [2], not [9]", 3) == [2, 1]
    assert metrics.declined("I cannot find this in your documents.")
    assert metrics.strip_citations("Denver [1].\n\nSources:\n[1] x") == "Denver."


def test_project_sets_load() -> None:
    for name in ("qa.jsonl", "qa-unanswerable.jsonl", "summarize.jsonl",
                 "translate-en-fr.jsonl"):
        assert load_items(DATA / name)
    assert len(load_items(DATA / "qa-unanswerable.jsonl", every=2)) == 5


def test_bad_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(EvalDataError, match="line 2"):
        load_items(path)


def test_paired_bootstrap_interval() -> None:
    better = [0.3 + 0.01 * (i % 5) for i in range(60)]
    worse = [x - 0.05 for x in better]
    mean, low, high = metrics.paired_bootstrap(better, worse)
    assert abs(mean - 0.05) < 1e-9 and low <= mean <= high and low > 0
    noisy = [0.1 if i % 2 else -0.1 for i in range(60)]
    mean, low, high = metrics.paired_bootstrap(noisy, [0.0] * 60)
    assert low < 0 < high  # no difference to see
    with pytest.raises(ValueError):
        metrics.paired_bootstrap([1.0], [])


def _backend(parallel: int) -> Any:
    """What the runners read of an eval backend: how many sequences its host decodes."""
    return SimpleNamespace(settings=SimpleNamespace(models=SimpleNamespace(parallel=parallel)))


def test_items_run_as_many_at_once_as_the_host_decodes_in_their_order() -> None:
    import asyncio

    from assistant.eval.runners import each

    running = most = 0

    async def run(item: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 * (7 - item))  # later items end first
        running -= 1
        return item * 10

    eb = _backend(parallel=3)
    assert asyncio.run(each(eb, list(range(7)), run)) == [0, 10, 20, 30, 40, 50, 60]  # type: ignore[arg-type]
    assert most == 3
    most = 0  # a run that reads much and writes little goes one at a time
    assert asyncio.run(each(eb, list(range(4)), run, 1)) == [0, 10, 20, 30]  # type: ignore[arg-type]
    assert most == 1


def test_the_bare_models_plain_summary_is_cut_at_the_plain_summary_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from assistant.eval import runners

    asked: list[tuple[str, str, int]] = []

    async def raw(eb: object, model: str, prompt: str, max_tokens: int = 256) -> str:
        asked.append((model, prompt, max_tokens))
        return "The council approved the new bridge."

    monkeypatch.setattr(runners, "raw", raw)
    eb = _backend(parallel=4)
    items = [{"document": "The council met on Monday and approved the new bridge.",
              "summary": "The council approved a bridge."}]
    report = asyncio.run(runners.summarize(eb, items, "m", True))  # type: ignore[arg-type]
    assert asked == [("m", f"Summarize: {items[0]['document']}", runners.PLAIN_SUMMARY)]
    assert report.items[0]["output"] == "The council approved the new bridge."


def test_the_bare_model_is_handed_a_qa_items_own_passage(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the skill has to find among every passage, the bare model is given: its figure is
    what retrieval at its best would leave the reader. With no passage it answers closed book.
    One question at a time (a run that reads much and writes a few words); each answerable
    row keeps its own F1, for the paired interval."""
    import asyncio

    from assistant.eval import runners

    asked: list[tuple[str, int]] = []
    running = most = 0

    async def raw(eb: object, model: str, prompt: str, max_tokens: int = 256) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        asked.append((prompt, max_tokens))
        return "two years" if "warranty" in prompt else "The documents do not say."

    monkeypatch.setattr(runners, "raw", raw)
    items = load_items(DATA / "qa.jsonl")
    with_passage = next(i for i in items if i.get("context"))
    without = next(i for i in items if not i.get("context"))
    assert not without["answers"]
    report = asyncio.run(runners.qa(_backend(parallel=4), [with_passage, without],  # type: ignore[arg-type]
                                    "m", True))
    assert asked == [
        (f"{with_passage['context']}\n\nAnswer the question in a few words: "
         f"{with_passage['question']}", 64),
        (f"Answer the question in a few words: {without['question']}", 64)]
    assert most == 1
    assert report.items[0]["F1"] == 1.0 and "F1" not in report.items[1]
    assert report.scores["F1"] == 1.0 and report.scores["declined (unanswerable)"] == 1.0


def test_a_passage_states_an_amount_however_it_is_written() -> None:
    ad = "CBS charged an average of $5 million for a 30-second commercial."
    assert metrics.states(ad, "$5,000,000") and metrics.states(ad, "$5 million")
    assert metrics.states("a base rate of $5,000,000, a record", "$5 million")
    assert metrics.states("watched by 2.5 billion people", "2,500,000,000")
    assert metrics.states("The Broncos won 24–10.", "the Broncos")  # SQuAD's normalisation
    assert not metrics.states(ad, "$6 million")
    assert not metrics.states(ad, "50 million")  # "5 million" is not read as "50 million"
    assert not metrics.states("ads cost $50 million", "$5 million")  # nor the other way
    assert not metrics.states("worth $1 billion", "100")  # digits inside a longer number
    assert metrics.states("a $5-million ad", "$5,000,000")
    assert not metrics.states("In 2016, million-dollar ads ran", "2016000000")
    assert not metrics.states("2,5 million", "25 million")  # a decimal comma is not read
    assert metrics.states("Brad Nortman's short 28-yard punt", "28")  # a hyphen parts words
    assert metrics.states("gold-tinted logos", "gold")
    assert not metrics.states(ad, "")
