"""Run a task's items through a skill, or through the bare model with a plain prompt (for qa,
after the item's own passage: :func:`plain_question`).

Each runner returns a :class:`Report`: the metric averages and every item's output, so a
report can show what the skill adds over ``--baseline raw`` on the same items.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from assistant.eval import metrics
from assistant.models.backend import ChatMessage, GenerationParams
from assistant.skills import Skill, Turn, collect, execute

if TYPE_CHECKING:
    from assistant.eval.backend import EvalBackend

ITEM_TIMEOUT = 600.0
READING = 1  # at once, for runs that read much and write a few words (see each)
# The bare model's plain summary ("Summarize: …") is cut at this many tokens. It writes on to
# any cap (XSum dev-60: 63.8 tokens of 64 on average); against XSum's references of about 28
# tokens a cut raises its ROUGE-L, so there the comparison is not in the skill's favour: at 64
# tokens, against 128 before, qwen2.5-coder-1.5b 0.131 (0.115), qwen2.5-coder-0.5b 0.125
# (0.101), in 397 s and 192 s of a run's 531 s and 248 s (2026-12-06, 2-core Intel). A set
# whose references are longer may lose the bare model some recall.
PLAIN_SUMMARY = 64
T = TypeVar("T")
R = TypeVar("R")


async def each(eb: EvalBackend, items: Sequence[T], run: Callable[[T], Awaitable[R]],
               at_once: int | None = None) -> list[R]:
    """``run`` over ``items``, ``at_once`` at a time (by default as many as the model host
    decodes together, ``models.parallel``), the results in the items' order. Greedy replies of
    sequences that share a batch can part from one-by-one replies at a near tie, as in the
    daemon itself.

    A run whose replies are a few words reads far more than it writes: pass
    :data:`READING` (one at a time). Four sequences share one KV buffer, so each prompt token
    attends over all of theirs: on SQuAD (qa, 40 questions, ``qwen2.5-coder-1.5b``) four at
    once took 274 s, one at a time 224 s. Replies of many tokens go faster four at once (the
    1.5B model's plain summaries, 12 articles: 103 s against 154 s; 60 translations 35 s
    against 47 s)."""
    gate = asyncio.Semaphore(max(1, at_once or eb.settings.models.parallel))

    async def one(item: T) -> R:
        async with gate:
            return await run(item)

    # A task group, not gather: when one item fails, the others are cancelled rather than left
    # running against a store and a model host the caller is about to close.
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(i)) for i in items]
    return [t.result() for t in tasks]


@dataclass
class Report:
    task: str
    system: str  # "skill" or "raw"
    model: str
    scores: dict[str, float]
    seconds: float
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "system": self.system, "model": self.model,
                "n": len(self.items), "scores": {k: round(v, 4) for k, v in self.scores.items()},
                "seconds": round(self.seconds, 1), "items": self.items}


def _skill(name: str) -> Skill:
    import importlib

    module = importlib.import_module(f"assistant_plugins.{name}")
    found: list[Skill] = []
    module.register_skills(found.append)
    return found[0]


async def raw(eb: EvalBackend, model: str, prompt: str, max_tokens: int = 256) -> str:
    """The bare model's reply to a single user message, greedy."""
    params = GenerationParams(temperature=0.0, max_tokens=max_tokens)
    pieces = [d.text async for d in eb.models.chat(model, [ChatMessage("user", prompt)],
                                                   params)]
    return "".join(pieces).strip()


async def run_skill(eb: EvalBackend, skill: str, turn: Turn, model: str,
                    config: dict[str, Any] | None = None, documents: Any = None) -> str:
    """The skill's reply as shipped: its ``[skills.NAME]`` settings (``model`` included), then
    ``config`` over them."""
    ctx = eb.context(model, config={**eb.settings.skill_section(skill), **(config or {})},
                     documents=documents)
    text, _ = await collect(execute(_skill(skill), turn, ctx, ITEM_TIMEOUT))
    return text.strip()


def skill_model(eb: EvalBackend, skill: str, model: str) -> str:
    """The model ``skill`` answers with when the turn's model is ``model``."""
    return str(eb.settings.skill_section(skill).get("model") or model)


LANGUAGE_NAMES = {"en": "English", "zh": "Chinese", "fr": "French", "de": "German",
                  "es": "Spanish", "ja": "Japanese", "it": "Italian", "pt": "Portuguese",
                  "ru": "Russian", "ko": "Korean"}


async def translate(eb: EvalBackend, items: Sequence[dict[str, Any]], model: str,
                    baseline: bool) -> Report:
    started = time.perf_counter()

    async def one(item: dict[str, Any]) -> str:
        target = item["target"]
        if baseline:
            return await raw(eb, model, f"Translate to {LANGUAGE_NAMES.get(target, target)}: "
                                        f"{item['source']}")
        args = {"target": target}
        if item.get("source_lang"):
            args["source"] = item["source_lang"]
        return await run_skill(eb, "translate", Turn(item["source"], args=args), model)

    outputs = await each(eb, items, one)
    targets = {i["target"] for i in items}
    lang = targets.pop() if len(targets) == 1 else "en"
    refs = [i["reference"] for i in items]
    scores = {"chrF": metrics.chrf(outputs, refs), "BLEU": metrics.bleu(outputs, refs, lang)}
    return Report("translate", "raw" if baseline else "skill",
                  model if baseline else skill_model(eb, "translate", model), scores,
                  time.perf_counter() - started,
                  [{"source": i["source"], "reference": i["reference"], "output": o}
                   for i, o in zip(items, outputs, strict=True)])


async def summarize(eb: EvalBackend, items: Sequence[dict[str, Any]], model: str,
                    baseline: bool, style: str = "one line") -> Report:
    started = time.perf_counter()

    async def one(item: dict[str, Any]) -> str:
        if baseline:
            return await raw(eb, model, f"Summarize: {item['document']}", PLAIN_SUMMARY)
        return await run_skill(eb, "summarize", Turn(
            "summarize", args={"text": item["document"], "style": style}), model)

    # The skill's one-line summary is a few words: one at a time. The bare model writes
    # PLAIN_SUMMARY tokens: as many at once as the host decodes.
    outputs = await each(eb, items, one, None if baseline or style != "one line" else READING)
    per_item = [metrics.rouge_l(o, i["summary"], i.get("lang", "en"))
                for i, o in zip(items, outputs, strict=True)]
    return Report("summarize", "raw" if baseline else "skill",
                  model if baseline else skill_model(eb, "summarize", model),
                  {"ROUGE-L": metrics.mean(per_item)}, time.perf_counter() - started,
                  [{"summary": i["summary"], "output": o, "ROUGE-L": round(r, 4)}
                   for i, o, r in zip(items, outputs, per_item, strict=True)])


class _Recording:
    """A DocumentSearch that remembers the passages of the last search."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last: list[dict[str, Any]] = []

    async def search(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        self.last = await self.inner.search(query, k)
        return self.last


async def build_index(eb: EvalBackend, contexts: Sequence[str], docs: Sequence[Path],
                      where: Path) -> Any:
    """A temp store holding ``docs`` and the distinct ``contexts`` (one paragraph each)."""
    from assistant.documents.ingest import add_file
    from assistant.documents.search import HybridSearch
    from assistant.store import Store

    store = Store.open(f"sqlite:///{where / 'eval.sqlite3'}", check=False)
    files = list(docs)
    if contexts:
        corpus = where / "contexts.txt"
        corpus.write_text("\n\n".join(dict.fromkeys(c.strip() for c in contexts)),
                          encoding="utf-8")
        files.append(corpus)
    for path in files:
        await add_file(store, path, eb.embed)
    return store, HybridSearch(store, eb.embed)


def plain_question(item: dict[str, Any]) -> str:
    """The bare model's prompt for a qa item: the item's own passage, when it has one, then
    the question, to be answered in a few words. The passage is what the skill must find among
    all the others: handed it, the bare model reads what retrieval at its best would give it
    (SQuAD every 4th, qwen2.5-coder-1.5b: F1 0.786, against 0.058 with no passage; asked
    without "in a few words" it answers in whole sentences, F1 0.415)."""
    question = f"Answer the question in a few words: {item['question']}"
    context = str(item.get("context") or "").strip()
    return f"{context}\n\n{question}" if context else question


async def qa(eb: EvalBackend, items: Sequence[dict[str, Any]], model: str, baseline: bool,
             docs: Sequence[Path] = (), corpus: Sequence[str] = ()) -> Report:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="assistant-eval-") as tmp:
        store = search = None
        if not baseline:
            contexts = list(corpus) + [str(i["context"]) for i in items if i.get("context")]
            store, search = await build_index(eb, contexts, docs, Path(tmp))

        async def one(item: dict[str, Any]) -> dict[str, Any]:
            answers = list(item.get("answers") or [])
            row: dict[str, Any] = {"question": item["question"], "answers": answers}
            if baseline:
                out = await raw(eb, model, plain_question(item), 64)
                row["output"] = out
            else:
                recording = _Recording(search)
                out = await run_skill(eb, "qa", Turn(item["question"]), model,
                                      documents=recording)
                row["output"] = out
                numbers = metrics.cited(out.split("\n\nSources:", 1)[0], len(recording.last))
                cited_text = recording.last[numbers[0] - 1]["text"] if numbers else ""
                # The cited passage states a gold answer, amounts compared by value; and, as
                # reported beside, with the answer written as the set writes it.
                row["citation_ok"] = any(metrics.states(cited_text, a) for a in answers)
                row["citation_as_written"] = any(
                    metrics.normalize_answer(a) in metrics.normalize_answer(cited_text)
                    for a in answers)
                row["retrieved"] = [p["chunk_id"] for p in recording.last]
            row["declined"] = metrics.declined(out)
            if answers:
                answer = metrics.strip_citations(out)
                row["EM"] = metrics.exact_match(answer, answers)
                row["F1"] = metrics.f1(answer, answers)
            return row

        try:
            rows = await each(eb, items, one, READING)
        finally:
            if store is not None:
                await asyncio.to_thread(store.close)
    answerable = [r for r in rows if r["answers"]]
    unanswerable = [r for r in rows if not r["answers"]]
    scores = {
        "EM": metrics.mean([r["EM"] for r in answerable]),
        "F1": metrics.mean([r["F1"] for r in answerable]),
    }
    if not baseline:
        scores["citation accuracy"] = metrics.mean([float(r["citation_ok"])
                                                    for r in answerable])
        scores["citation accuracy, as written"] = metrics.mean(
            [float(r["citation_as_written"]) for r in answerable])
    if unanswerable:
        scores["declined (unanswerable)"] = metrics.mean([float(r["declined"])
                                                          for r in unanswerable])
    return Report("qa", "raw" if baseline else "skill",
                  model if baseline else skill_model(eb, "qa", model), scores,
                  time.perf_counter() - started, rows)


async def routing(eb: EvalBackend, items: Sequence[dict[str, Any]], skills: dict[str, Skill]
                  ) -> Report:
    from assistant.routing import Router

    started = time.perf_counter()
    router = Router(skills, eb.embed)
    rows = []
    for item in items:
        decision = await router.route(item["text"])
        rows.append({"text": item["text"], "expected": item["skill"], "got": decision.skill})
    scores = {"accuracy": metrics.mean([float(r["expected"] == r["got"]) for r in rows])}
    return Report("routing", "router", eb.embedder.name, scores, time.perf_counter() - started,
                  rows)
