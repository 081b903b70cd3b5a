"""Decoding under a JSON schema: tokens per second with the grammar ÷ without, same daemon.

One daemon runs qwen2.5-coder-0.5b. Each round asks for the same long JSON list twice, once
with ``response_format`` ``json_schema`` (each chosen token checked against the grammar,
``assistant.models.grammar_sampling``) and once without, streamed; the rate is the tokens
after the first over the time after the first, so prompt reading is left out. Rounds alternate
the order. Target: ≥ 0.7 (issue 16).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import Row
from benchmarks.bench_cpu import FILE, MODEL, start, stop
from benchmarks.bench_daemon import MODELS_DIR

ROUNDS = 3
MAX_TOKENS = 160
SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["items"],
    "properties": {"items": {"type": "array", "minItems": 40, "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "grams"],
        "properties": {"name": {"type": "string", "maxLength": 24},
                       "grams": {"type": "integer"}}}}},
}


def decode_rate(http: httpx.Client, i: int, constrained: bool) -> float:
    body = {
        "model": MODEL, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": f"List {40 + i} kitchen items with their "
                                                 "weight in grams, as JSON."}],
    }
    if constrained:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "items", "schema": SCHEMA}}
    first = last = 0.0
    tokens = 0
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[len("data: "):])
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
    if tokens < 20 or last <= first:
        raise RuntimeError(f"too short a reply to time ({tokens} tokens)")
    return (tokens - 1) / (last - first)


def run() -> list[Row]:
    if not (MODELS_DIR / FILE).exists():
        return [Row(f"{MODEL}: not installed", 0, 0, "", "skip")]
    with tempfile.TemporaryDirectory(prefix="asb-", dir="/tmp") as tmp:
        proc, http = start(Path(tmp), "auto")
        try:
            decode_rate(http, 99, False)  # load the model
            rates: dict[bool, list[float]] = {True: [], False: []}
            for i in range(ROUNDS):
                for constrained in (i % 2 == 0, i % 2 == 1):
                    rates[constrained].append(decode_rate(http, i, constrained))
        finally:
            http.close()
            stop(proc)
    ours, base = statistics.median(rates[True]), statistics.median(rates[False])
    return [Row(f"{MODEL}: decode with a JSON schema ÷ without", ours, base, "tok/s",
                "ratio ≥ 0.7", ours / base >= 0.7)]


if __name__ == "__main__":
    for row in run():
        print(row.line())
