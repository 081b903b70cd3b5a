"""Decode speed and time to first token through the daemon, against raw llama-cpp-python.

Both sides run the same GGUF file with the same threads, context and attention (flash
attention, which the model host turns on: see ``assistant.models.llama.FLASH_ATTENTION``;
the raw library's default is off), in the same run, taking turns so that load on the machine
hits both alike. Each prompt is new (no prefix reuse on either side); the figure kept is the
median of the rounds.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import Row

MODELS_DIR = Path(
    os.environ.get("ASSISTANT_TEST_MODELS_DIR", Path(__file__).parents[1] / ".models"))
MODELS = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}
THREADS = len(os.sched_getaffinity(0))
CONTEXT = 2048
MAX_TOKENS = 96
ROUNDS = 3
TOPICS = ["a lighthouse", "a bakery", "a comet", "a violin", "a glacier", "a market"]


def prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a long story about {TOPICS[i % len(TOPICS)]}, "
                                        f"chapter {i}."}]


def raw_round(llm: object, i: int) -> tuple[float, float]:
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    for chunk in llm.create_chat_completion(  # type: ignore[attr-defined]
        messages=prompt(i), max_tokens=MAX_TOKENS, temperature=0, stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            last = time.perf_counter()
            first = first or last
            count += 1
    return first - started, (count - 1) / (last - first)


def daemon_round(http: httpx.Client, model: str, i: int) -> tuple[float, float]:
    body = {"model": model, "messages": prompt(i), "max_tokens": MAX_TOKENS, "temperature": 0,
            "stream": True}
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:])["choices"]
            if choices and choices[0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
                count += 1
    return first - started, (count - 1) / (last - first)


def start_daemon(runtime: Path, data: Path,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``assistant serve`` on ``runtime``'s socket, once it listens; ``env`` adds settings."""
    env = {**os.environ, "ASSISTANT_RUNTIME_DIR": str(runtime), "ASSISTANT_DATA_DIR": str(data),
           "ASSISTANT_MODELS_DIR": str(MODELS_DIR), "ASSISTANT_DAEMON__THREADS": str(THREADS),
           "ASSISTANT_MODELS__CONTEXT_LENGTH": str(CONTEXT), "ASSISTANT_LOG_LEVEL": "warning",
           **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "assistant", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = runtime / "assistant.sock"
    deadline = time.monotonic() + 60
    while not sock.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise RuntimeError("daemon did not start")
        time.sleep(0.05)
    return proc


def run() -> list[Row]:
    import llama_cpp

    from assistant.models import cpu
    from assistant.models.llama import FLASH_ATTENTION

    cpu.load()  # the raw side runs the CPU variant the daemon's model host chooses

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="asb-", dir="/tmp") as tmp:
        proc = start_daemon(Path(tmp) / "run", Path(tmp) / "data")
        transport = httpx.HTTPTransport(uds=str(Path(tmp) / "run" / "assistant.sock"))
        try:
            with httpx.Client(transport=transport, base_url="http://assistant",
                              timeout=300) as http:
                for model, filename in MODELS.items():
                    path = MODELS_DIR / filename
                    if not path.exists():
                        rows.append(Row(f"{model}: not installed", 0, 0, "", "skip"))
                        continue
                    llm = llama_cpp.Llama(str(path), n_ctx=CONTEXT, n_threads=THREADS,
                                          n_threads_batch=THREADS, flash_attn=FLASH_ATTENTION,
                                          verbose=False)
                    raw_round(llm, 99)  # warm both sides: page in weights, load in the daemon
                    daemon_round(http, model, 98)
                    raw, ours = [], []
                    for i in range(ROUNDS):
                        raw.append(raw_round(llm, 2 * i))
                        ours.append(daemon_round(http, model, 2 * i + 1))
                    llm.close()
                    ttft_raw = statistics.median(r[0] for r in raw) * 1000
                    ttft_ours = statistics.median(r[0] for r in ours) * 1000
                    tps_raw = statistics.median(r[1] for r in raw)
                    tps_ours = statistics.median(r[1] for r in ours)
                    rows.append(Row(f"{model}: decode through daemon", tps_ours, tps_raw,
                                    "tok/s", "ratio ≥ 0.95", tps_ours / tps_raw >= 0.95))
                    rows.append(Row(f"{model}: time to first token", ttft_ours, ttft_raw,
                                    "ms", "ratio ≤ 1.10", ttft_ours / ttft_raw <= 1.10))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row.line())
