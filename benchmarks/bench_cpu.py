"""Prompt reading at the CPU's speed: the daemon's llama.cpp CPU variant against the baseline.

Two daemons run the same GGUF file with the same threads and context: one as configured
(``models.cpu_variant = "auto"``: the best variant this CPU and OS can run), one forced to
``haswell``, the portable AVX2 build this project shipped before. They take turns, one request
at a time, so that neither slows the other. Each request is a new ~1,000-token prompt with
``max_tokens = 1``: its time is the prompt read. The target (≥ 1.4×) holds where the variant
chosen has AVX-512; elsewhere the ratio is reported alone.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import Row
from benchmarks.bench_daemon import MODELS_DIR, start_daemon

MODEL, FILE = "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
ROUNDS = 5
BASELINE = "haswell"
AVX512 = {"skylakex", "cannonlake", "cascadelake", "icelake", "cooperlake", "zen4",
          "sapphirerapids"}


def prompt(i: int) -> list[dict[str, str]]:
    facts = " ".join(f"Item {i}-{n} weighs {(n * 37 + i) % 101} grams and costs {n % 13} euros."
                     for n in range(70))
    return [{"role": "user", "content": f"List {i}. {facts} Which item is the heaviest?"}]


def start(tmp: Path, variant: str) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    runtime = tmp / variant / "run"
    proc = start_daemon(runtime, tmp / variant / "data", {
        "ASSISTANT_MODELS__CONTEXT_LENGTH": "2048", "ASSISTANT_MODELS__STATE_DISK_MB": "0",
        "ASSISTANT_MODELS__STATE_RAM_MB": "0", "ASSISTANT_MODELS__CPU_VARIANT": variant})
    http = httpx.Client(transport=httpx.HTTPTransport(uds=str(runtime / "assistant.sock")),
                        base_url="http://assistant", timeout=600)
    return proc, http


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_prompt(http: httpx.Client, i: int) -> float:
    """Prompt tokens read per second for a new prompt."""
    started = time.perf_counter()
    response = http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": prompt(i), "max_tokens": 1, "temperature": 0})
    response.raise_for_status()
    return int(response.json()["usage"]["prompt_tokens"]) / (time.perf_counter() - started)


def run() -> list[Row]:
    from assistant.models import cpu

    if not cpu.installed():
        return [Row("prompt read: llama.cpp built without CPU variants", 0, 0, "", "skip")]
    if not (MODELS_DIR / FILE).exists():
        return [Row(f"{MODEL}: not installed", 0, 0, "", "skip")]
    with tempfile.TemporaryDirectory(prefix="asb-", dir="/tmp") as tmp:
        daemons: dict[str, tuple[subprocess.Popen[bytes], httpx.Client]] = {}
        try:
            for variant in ("auto", BASELINE):
                daemons[variant] = start(Path(tmp), variant)
            speeds: dict[str, list[float]] = {v: [] for v in daemons}
            for _, http in daemons.values():
                read_prompt(http, 99)  # load the model, page its weights in
            for i in range(ROUNDS):
                for variant, (_, http) in daemons.items():
                    speeds[variant].append(read_prompt(http, i))
            chosen = daemons["auto"][1].get("/api/status").json().get("cpu_variant") or {}
        finally:
            for proc, http in daemons.values():
                http.close()
                stop(proc)
    name = chosen.get("variant") or "built in"
    ours, base = statistics.median(speeds["auto"]), statistics.median(speeds[BASELINE])
    target_applies = name in AVX512
    return [Row(f"{MODEL}: prompt read, {name} ÷ {BASELINE}", ours, base, "tok/s",
                "ratio ≥ 1.4 (AVX-512)" if target_applies else "reported (no AVX-512)",
                ours / base >= 1.4 if target_applies else None)]


if __name__ == "__main__":
    for row in run():
        print(row.line())
