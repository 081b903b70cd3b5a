"""What quality costs: each skill as shipped (with the model its ``[skills.X] model`` picks)
beside the bare default model answering the same input with a one-line prompt, greedy.

    python -m benchmarks skills     # prints: name value baseline ratio

For each skill, the median turn time and the median time to the first token, both measured in
the same run as the bare model's. No target: the skills answer with a larger model and do more
work (few-shot prompts, retrieval, checks), and these rows show what that costs next to the
quality figures of docs/quality.md. In-process and daemon-less (the eval backend: the daemon's
model host as a child process, MiniLM here).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

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


async def _timed(stream: AsyncIterator[str]) -> tuple[float, float]:
    """(seconds to the first piece of text, seconds to the end) of ``stream``."""
    started = time.perf_counter()
    first = 0.0
    async for piece in stream:
        if piece and not first:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    return first or total, total


async def _measure() -> list[Row]:
    from assistant.config import load_settings
    from assistant.eval import runners
    from assistant.eval.backend import eval_backend
    from assistant.models.backend import ChatMessage, GenerationParams
    from assistant.skills import DeltaEvent, Turn, execute

    rows: list[Row] = []
    async with eval_backend(load_settings()) as eb:
        await runners.raw(eb, MODEL, "hi", 4)  # load the model before timing anything

        async def skill_stream(name: str, turn: Turn, documents: Any = None
                               ) -> AsyncIterator[str]:
            config = eb.settings.skill_section(name)
            ctx = eb.context(MODEL, config=config, documents=documents)
            async for event in execute(runners._skill(name), turn, ctx, runners.ITEM_TIMEOUT):
                if isinstance(event, DeltaEvent):
                    yield event.text

        async def bare_stream(prompt: str, max_tokens: int = 256) -> AsyncIterator[str]:
            params = GenerationParams(temperature=0.0, max_tokens=max_tokens)
            async for delta in eb.models.chat(MODEL, [ChatMessage("user", prompt)], params):
                yield delta.text

        Case = tuple[Callable[[], AsyncIterator[str]], Callable[[], AsyncIterator[str]]]

        async def pair(name: str, skill_name: str, cases: list[Case]) -> list[Row]:
            skill: list[tuple[float, float]] = []
            bare: list[tuple[float, float]] = []
            for _ in range(ROUNDS):
                for run_skill, run_raw in cases:
                    skill.append(await _timed(run_skill()))
                    bare.append(await _timed(run_raw()))
            model = runners.skill_model(eb, skill_name, MODEL)
            label = f"skills: {name} [{model}]"
            return [
                Row(f"{label} turn", statistics.median(t for _, t in skill),
                    statistics.median(t for _, t in bare), "s", "none (cost of quality)"),
                Row(f"{label} first token", statistics.median(f for f, _ in skill),
                    statistics.median(f for f, _ in bare), "s", "none (cost of quality)"),
            ]

        def translate(text: str) -> Case:
            return (lambda: skill_stream("translate", Turn(
                        text, args={"target": "fr", "source": "en"})),
                    lambda: bare_stream(f"Translate to French: {text}"))

        rows += await pair("translate en→fr, one sentence", "translate",
                           [translate(s) for s in SENTENCES])
        rows += await pair("summarize, one line, 110 words", "summarize", [(
            lambda: skill_stream("summarize", Turn(
                "summarize", args={"text": ARTICLE, "style": "one line"})),
            lambda: bare_stream(f"Summarize: {ARTICLE}", runners.PLAIN_SUMMARY))])
        with tempfile.TemporaryDirectory(prefix="bench-skills-") as tmp:
            notes = Path(tmp) / "notes.md"
            notes.write_text(NOTES, encoding="utf-8")
            store, search = await runners.build_index(eb, [], [notes], Path(tmp))
            try:
                def ask(q: str) -> Case:
                    return (lambda: skill_stream("qa", Turn(q), search),
                            # Closed book: the time of a plain question. (docs/quality.md's
                            # figures hand the bare model the question's own passage.)
                            lambda: bare_stream(f"Answer the question: {q}", 64))

                rows += await pair("qa over a note, with retrieval", "qa",
                                   [ask(q) for q in QUESTIONS])
            finally:
                await asyncio.to_thread(store.close)
    return rows


def run() -> list[Row]:
    if not (MODELS_DIR / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").exists() \
            and MODEL == "qwen2.5-coder-0.5b":
        return [Row("skills: qwen2.5-coder-0.5b not installed", 0, 0, "", "skip")]
    saved = {k: os.environ.get(k) for k in ("ASSISTANT_DATA_DIR", "ASSISTANT_MODELS_DIR")}
    with tempfile.TemporaryDirectory(prefix="bench-skills-data-") as data:
        # A throwaway data dir for whatever the eval backend writes (its states stay in RAM).
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
