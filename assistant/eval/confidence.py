"""How well a reply's confidence (:mod:`assistant.confidence`) tells right answers from wrong.

The qa skill answers SQuAD questions from an index of the file's paragraphs, as ``assistant
eval qa`` does; each answer keeps the log-probabilities of the generation it came from. An
answer is right when its SQuAD F1 is at least :data:`RIGHT_F1`. Every formula of
:data:`assistant.confidence.FORMULAS` is scored by AUROC; for the chosen one, the threshold
under which a reply is flagged ``low`` is the one with the best balanced accuracy (Youden's J),
and the flag's precision (flagged answers that are wrong) and recall (wrong answers flagged)
are reported there::

    python -m assistant.eval.confidence squad.json --every 8 --save rows.json
    python -m assistant.eval.confidence squad.json --every 8 --offset 4 --save more.json
    python -m assistant.eval.confidence --load rows.json more.json   # the figures, no model

It runs the model host in-process as ``assistant eval`` does (ASSISTANT_MODELS_DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant import confidence as conf
from assistant.eval import metrics

RIGHT_F1 = 0.5


async def answer(items: Sequence[dict[str, Any]], model: str, corpus: Sequence[str],
                 ) -> list[dict[str, Any]]:
    """Each item's qa answer, F1 and its generation's token log-probabilities."""
    from assistant.config import load_settings
    from assistant.eval.backend import eval_backend
    from assistant.eval.runners import ITEM_TIMEOUT, READING, _skill, build_index, each
    from assistant.skills import Turn, collect, execute

    settings = load_settings()
    skill = _skill("qa")
    async with eval_backend(settings) as eb:
        with tempfile.TemporaryDirectory(prefix="assistant-eval-") as tmp:
            store, search = await build_index(eb, corpus, [], Path(tmp))

            async def one(item: dict[str, Any]) -> dict[str, Any]:
                ctx = eb.context(model, config={**settings.skill_section("qa"),
                                                "model": model}, documents=search)
                text, _ = await collect(execute(skill, Turn(item["question"]), ctx,
                                                ITEM_TIMEOUT))
                output = metrics.strip_citations(text.strip())
                return {"question": item["question"], "answers": item["answers"],
                        "output": output, "f1": metrics.f1(output, item["answers"]),
                        "declined": metrics.declined(output),
                        "logprobs": ctx.reply_logprobs}

            try:
                return await each(eb, items, one, READING)
            finally:
                await asyncio.to_thread(store.close)


def figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """AUROC of every formula over the rows with a figure (the chosen one's with a 95 %
    bootstrap interval), and the low flag at each threshold: how many it flags, its precision
    (flagged answers that are wrong) and recall (wrong answers flagged)."""
    scored = [r for r in rows if r.get("logprobs")]
    right = [r["f1"] >= RIGHT_F1 for r in scored]
    out: dict[str, Any] = {"n": len(rows), "scored": len(scored), "right": sum(right),
                           "right_f1": RIGHT_F1, "formula": conf.FORMULA, "auroc": {}}
    for name, formula in conf.FORMULAS.items():
        out["auroc"][name] = round(metrics.auroc([formula(r["logprobs"]) for r in scored],
                                                 right), 3)
    values = [conf.FORMULAS[conf.FORMULA](r["logprobs"]) for r in scored]
    rng = random.Random(0)
    samples: list[float] = []
    while len(samples) < 1000:
        pick = [rng.randrange(len(values)) for _ in values]
        labels = [right[i] for i in pick]
        if any(labels) and not all(labels):
            samples.append(metrics.auroc([values[i] for i in pick], labels))
    samples.sort()
    out["auroc_95"] = [round(samples[25], 3), round(samples[974], 3)]
    out["thresholds"] = {}
    for cut in (0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, conf.LOW):
        flagged = [v < cut for v in values]
        caught = sum(f and not y for f, y in zip(flagged, right, strict=True))
        out["thresholds"][f"{cut:.2f}"] = {
            "flagged": sum(flagged), "precision": round(caught / max(1, sum(flagged)), 3),
            "recall": round(caught / max(1, right.count(False)), 3)}
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m assistant.eval.confidence")
    parser.add_argument("file", nargs="?", type=Path, help="a SQuAD .json file")
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--offset", type=int, default=0, help="start at this item")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--save", type=Path, help="write the answered rows here")
    parser.add_argument("--load", type=Path, nargs="+",
                        help="rows saved before (several: joined); no model is run")
    args = parser.parse_args(argv)
    if args.load:
        rows = [r for path in args.load for r in json.loads(path.read_text(encoding="utf-8"))]
    elif args.file:
        from assistant.eval.data import load_items

        items = load_items(args.file)[args.offset::args.every][:args.limit]
        corpus = [str(i["context"]) for i in load_items(args.file)]
        started = time.perf_counter()
        rows = asyncio.run(answer(items, args.model, corpus))
        print(f"{len(rows)} answers in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if args.save:
            args.save.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    else:
        parser.error("give a SQuAD file or --load")
    print(json.dumps(figures(rows), indent=2))


if __name__ == "__main__":
    main()
