"""Warm conversations: time to first token of a follow-up in a ~3,000-token conversation.

The baseline is the same request cold: a daemon with no saved states reading the whole
history. Measured through the daemon's OpenAI API with qwen2.5-coder-0.5b: a follow-up in the
same conversation, a return to it after another conversation ran, and a continuation after
the daemon restarted (its states read back from disk).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import Row

MODELS_DIR = Path(
    os.environ.get("ASSISTANT_TEST_MODELS_DIR", Path(__file__).parents[1] / ".models"))
MODEL = os.environ.get("BENCH_WARM_MODEL", "qwen2.5-coder-0.5b")
THREADS = len(os.sched_getaffinity(0))

HISTORY = [
    {"role": "user", "content": " ".join(
        f"Note {i}: the warehouse in city {i} stores {i * 37 % 101} crates of item {i * 13 % 29}."
        for i in range(150))},
    {"role": "assistant", "content": "Understood. I have noted the inventory of all cities."},
]
OTHER = [{"role": "user", "content": "Write two sentences about the sea. " * 20}]


def ask(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return [*HISTORY, *messages]


class Daemon:
    def __init__(self, root: Path, states: bool) -> None:
        self.runtime = root / "run"
        env = {**os.environ, "ASSISTANT_RUNTIME_DIR": str(self.runtime),
               "ASSISTANT_DATA_DIR": str(root / "data"), "ASSISTANT_MODELS_DIR": str(MODELS_DIR),
               "ASSISTANT_DAEMON__THREADS": str(THREADS), "ASSISTANT_LOG_LEVEL": "warning",
               "ASSISTANT_MODELS__CONTEXT_LENGTH": "4096"}
        if not states:
            env.update(ASSISTANT_MODELS__STATE_RAM_MB="0", ASSISTANT_MODELS__STATE_DISK_MB="0")
        self.proc = subprocess.Popen([sys.executable, "-m", "assistant", "serve"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock = self.runtime / "assistant.sock"
        deadline = time.monotonic() + 120
        while not sock.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("daemon did not start")
            time.sleep(0.05)
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                                 base_url="http://assistant", timeout=900)

    def ttft(self, messages: list[dict[str, str]]) -> tuple[float, str]:
        body = {"model": MODEL, "messages": messages, "max_tokens": 24, "temperature": 0,
                "stream": True}
        started = time.perf_counter()
        first = 0.0
        text = []
        with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    choices = json.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        first = first or time.perf_counter() - started
                        text.append(choices[0]["delta"]["content"])
        return first, "".join(text)

    def stop(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def run() -> list[Row]:
    if not (MODELS_DIR / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").exists() \
            and MODEL == "qwen2.5-coder-0.5b":
        return [Row("warm: qwen2.5-coder-0.5b not installed", 0, 0, "", "skip")]
    q1 = [{"role": "user", "content": "Which city stores the most crates?"}]
    with tempfile.TemporaryDirectory(prefix="asw-", dir="/tmp") as tmp:
        root = Path(tmp)
        cold_daemon = Daemon(root / "cold", states=False)
        try:
            cold_daemon.ttft([{"role": "user", "content": "hi"}])  # load the model first
            cold, _ = cold_daemon.ttft(ask(q1))
        finally:
            cold_daemon.stop()

        warm = Daemon(root / "warm", states=True)
        try:
            warm.ttft([{"role": "user", "content": "hi"}])
            _, reply = warm.ttft(ask(q1))
            q2 = [*q1, {"role": "assistant", "content": reply},
                  {"role": "user", "content": "And which stores the fewest?"}]
            follow_up, reply2 = warm.ttft(ask(q2))
            warm.ttft(OTHER)
            q3 = [*q2, {"role": "assistant", "content": reply2},
                  {"role": "user", "content": "How many crates in city 7?"}]
            back, _ = warm.ttft(ask(q3))
        finally:
            warm.stop()
        restarted = Daemon(root / "warm", states=True)
        try:
            restarted.ttft([{"role": "user", "content": "hi"}])  # load the model, as for cold
            q4 = [*q3, {"role": "user", "content": "And in city 8?"}]
            after_restart, _ = restarted.ttft(ask(q4))
        finally:
            restarted.stop()
    return [
        Row("warm: follow-up, same conversation (TTFT)", follow_up, cold, "s",
            "ratio ≤ 0.10", follow_up / cold <= 0.10),
        Row("warm: back to A after B (TTFT)", back, cold, "s", "ratio ≤ 0.10",
            back / cold <= 0.10),
        Row("warm: continue A after restart (TTFT)", after_restart, cold, "s",
            "ratio ≤ 0.20", after_restart / cold <= 0.20),
    ]


if __name__ == "__main__":
    for row in run():
        print(row.line())
