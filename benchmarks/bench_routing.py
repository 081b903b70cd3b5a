"""Routing latency, warm: p50 / p95 of Router.route against the bare embedding call.

    python benchmarks/bench_routing.py        # prints: name value baseline ratio target

The baseline is measured in the same run: one MiniLM embedding of the same utterance, which is
the floor the router cannot beat. Target: route p95 <= 15 ms on 2 cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from assistant.embedding import MiniLMEmbedder
from assistant.plugins import PluginHost
from assistant.routing import Router
from benchmarks import Row

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "routing.jsonl"
TARGET_P95_MS = 15.0


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run(models_dir: str | None = None, rounds: int = 1) -> list[Row]:
    """Route p50 / p95 against the bare embedding call of the same utterances."""
    embedder = MiniLMEmbedder(Path(models_dir or os.environ.get(
        "ASSISTANT_TEST_MODELS_DIR", os.environ.get("ASSISTANT_MODELS_DIR", REPO / ".models"))))
    texts = [json.loads(line)["text"] for line in DATA.read_text(encoding="utf-8").splitlines()]

    async def embed(batch: list[str]) -> list[list[float]]:
        return await embedder.embed(embedder.name, batch)

    host = PluginHost()
    host.load_entry_points()
    router = Router(host.available_skills(), embed)

    async def measure() -> tuple[list[float], list[float]]:
        await router.warm()
        await router.route("warm up")
        base, route = [], []
        for _ in range(rounds):
            for text in texts:
                t0 = time.perf_counter()
                await embed([text])
                t1 = time.perf_counter()
                await router.route(text)
                t2 = time.perf_counter()
                base.append((t1 - t0) * 1000)
                route.append((t2 - t1) * 1000)
        return base, route

    base, route = asyncio.run(measure())
    rows = []
    for q in (50, 95):
        value, baseline = _percentile(route, q), _percentile(base, q)
        if q == 95:
            rows.append(Row("routing: p95, warm", value, baseline, "ms",
                            f"≤ {TARGET_P95_MS:g} ms", value <= TARGET_P95_MS))
        else:
            rows.append(Row("routing: p50, warm", value, baseline, "ms", "-"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(row.line())
