"""Skill latency against the bare model: one turn of each skill and one bare request on the
same input, qwen2.5-coder-0.5b, greedy.

    python -m benchmarks skills     # prints: name value baseline ratio target

The baseline is measured in the same run: the bare model answering the same input with the
one-line prompt ``assistant eval --baseline raw`` uses. A skill does more work (few-shot
prompts, retrieval, map-reduce), so the ratio says what that work costs. In-process and
daemon-less (the eval backend: the daemon's model host as a child process, MiniLM here).
Targets: a translation or an answer within 3× the bare call; a one-line summary within 2×.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks import Row

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "eval"
MODELS_DIR = Path(os.environ.get("ASSISTANT_TEST_MODELS_DIR", REPO / ".models"))
MODEL = os.environ.get("BENCH_SKILLS_MODEL", "qwen2.5-coder-0.5b")
ROUNDS = int(os.environ.get("BENCH_SKILLS_ROUNDS", "3"))

SENTENCES = ["The museum opens at nine and closes at six, except on Mondays.",
             "She forgot her umbrella on the train yesterday.",
             "Our team will present the results of the survey next week."]
ARTICLE = (
    "The town council voted on Tuesday to close the old bridge over the river for repairs. "
    "Engineers found cracks in two of its supports during an inspection last month. The work "
    "will take about eight months and cost 2.4 million pounds. Buses will use a temporary "
    "route through the industrial estate, adding ten minutes to most journeys. Shop owners "
    "near the bridge said they feared losing customers, and the council promised to review "
    "parking charges in the area. The bridge, built in 1892, carries about 9,000 vehicles a "
    "day.")
NOTES = ("The warranty on every laptop lasts two years and covers all parts and labour, but "
         "not damage caused by water.\n\nEmployees get twenty-five vacation days per year and "
         "may carry up to five unused days into the next year.\n\nThe office in Leeds opens at "
         "8:30 and the front desk closes at 17:00.")
QUESTIONS = ["How many vacation days do employees get?", "How long is the laptop warranty?",
             "When does the front desk close?"]


async def _timed(work: Callable[[], Awaitable[str]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


async def _measure() -> list[Row]:
    from assistant.config import load_settings
    from assistant.eval import runners
    from assistant.eval.backend import eval_backend
    from assistant.skills import Turn

    rows = []
    async with eval_backend(load_settings()) as eb:
        await runners.raw(eb, MODEL, "hi", 4)  # load the model before timing anything

        async def pair(name: str, target: float,
                       cases: list[tuple[Callable[[], Awaitable[str]],
                                         Callable[[], Awaitable[str]]]]) -> Row:
            skill, bare = [], []
            for _ in range(ROUNDS):
                for run_skill, run_raw in cases:
                    skill.append(await _timed(run_skill))
                    bare.append(await _timed(run_raw))
            value, baseline = statistics.median(skill), statistics.median(bare)
            return Row(f"skills: {name} (median turn)", value, baseline, "s",
                       f"ratio ≤ {target:g}", value <= target * baseline)

        def translate(text: str) -> tuple[Callable[[], Awaitable[str]],
                                          Callable[[], Awaitable[str]]]:
            return (lambda: runners.run_skill(eb, "translate", Turn(
                        text, args={"target": "fr", "source": "en"}), MODEL),
                    lambda: runners.raw(eb, MODEL, f"Translate to French: {text}"))

        rows.append(await pair("translate en→fr, one sentence", 3.0,
                               [translate(s) for s in SENTENCES]))
        rows.append(await pair("summarize, one line, 110 words", 2.0, [(
            lambda: runners.run_skill(eb, "summarize", Turn(
                "summarize", args={"text": ARTICLE, "style": "one line"}), MODEL),
            lambda: runners.raw(eb, MODEL, f"Summarize: {ARTICLE}", 128))]))
        with tempfile.TemporaryDirectory(prefix="bench-skills-") as tmp:
            notes = Path(tmp) / "notes.md"
            notes.write_text(NOTES, encoding="utf-8")
            store, search = await runners.build_index(eb, [], [notes], Path(tmp))
            try:
                def ask(q: str) -> tuple[Callable[[], Awaitable[str]],
                                         Callable[[], Awaitable[str]]]:
                    return (lambda: runners.run_skill(eb, "qa", Turn(q), MODEL,
                                                      documents=search),
                            lambda: runners.raw(eb, MODEL, f"Answer the question: {q}", 64))

                rows.append(await pair("qa over a note, with retrieval", 3.0,
                                       [ask(q) for q in QUESTIONS]))
            finally:
                await asyncio.to_thread(store.close)
    return rows


def run() -> list[Row]:
    if not (MODELS_DIR / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").exists() \
            and MODEL == "qwen2.5-coder-0.5b":
        return [Row("skills: qwen2.5-coder-0.5b not installed", 0, 0, "", "skip")]
    saved = {k: os.environ.get(k) for k in ("ASSISTANT_DATA_DIR", "ASSISTANT_MODELS_DIR")}
    with tempfile.TemporaryDirectory(prefix="bench-skills-data-") as data:
        # A throwaway data dir: the eval backend saves model states there.
        os.environ.update(ASSISTANT_DATA_DIR=data, ASSISTANT_MODELS_DIR=str(MODELS_DIR))
        try:
            return asyncio.run(_measure())
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


if __name__ == "__main__":
    for row in run():
        print(row.line())
