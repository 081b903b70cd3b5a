"""What a remote engine costs through the daemon: the same short T=0 chat request sent to a
real engine directly and through the daemon (model ``peer/…``), taking turns, in the same run.

The engine is llama-cpp-python's own server on smollm2-135m (the peer of
tests/integration/test_remote_engine.py). Every request is the same, so the engine reads the
prompt from its cache and both sides ask it for the same little work (two tokens: the less
the engine works, the less its noise hides ours). Each round sends the request both ways, in
alternating order; the overhead is the median of the rounds' differences, which load that
drifts during the run (other processes on the machine) hits alike. A native ``/api/turns``
is not measured: its prompt (the skill's system prompt) is not the one sent directly, so the
engine would read it anew each time and the figure would be the engine's, not ours.
"""

from __future__ import annotations

import json
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Row
from benchmarks.bench_daemon import start_daemon

ROUNDS = 60
TARGET_MS = 5.0
BODY = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2,
        "temperature": 0, "seed": 1}


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def paired(i: int, direct: Callable[[], Any], ours: Callable[[], Any],
           ) -> tuple[float, float]:
    """(direct ms, through-the-daemon ms) of one round; who goes first alternates."""
    if i % 2:
        mine = timed(ours)
        return timed(direct), mine
    base = timed(direct)
    return base, timed(ours)


def plain(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"]


def streamed(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    ended = False
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            ended = ended or (line.startswith("data: {") and '"finish_reason":"' in
                              line.replace(" ", "")) or line == "data: [DONE]"
    assert ended


def ready(http: httpx.Client) -> None:
    deadline = time.monotonic() + 300
    while http.get("/health").json()["status"] == "starting":
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon did not finish starting")
        time.sleep(0.2)


def run() -> list[Row]:
    from tests.integration.peer_engine import ALIAS, KEY, PeerEngine

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="asr-", dir="/tmp") as tmp:
        peer = PeerEngine(Path(tmp) / "peer.log")
        peer.start()
        proc = None
        try:
            proc = start_daemon(Path(tmp) / "run", Path(tmp) / "data", {
                "PEER_KEY": KEY, "ASSISTANT_ENGINES__PEER__BASE_URL": peer.base_url,
                "ASSISTANT_ENGINES__PEER__API_KEY_ENV": "PEER_KEY",
                "ASSISTANT_ENGINES__PEER__MODELS": json.dumps([ALIAS])})
            transport = httpx.HTTPTransport(uds=str(Path(tmp) / "run" / "assistant.sock"))
            with httpx.Client(transport=transport, base_url="http://assistant",
                              timeout=120) as ours, peer.http() as direct:
                ready(ours)  # its start-up work (routing's warm-up) done: not in the figures
                theirs = {**BODY, "model": ALIAS}
                through = {**BODY, "model": f"peer/{ALIAS}"}
                for name, send in (("non-streamed", plain), ("streamed", streamed)):
                    for _ in range(10):  # warm: connections, the engine's prompt cache
                        send(direct, "/chat/completions", theirs)
                        send(ours, "/v1/chat/completions", through)
                    rounds = [paired(i, lambda: send(  # noqa: B023
                        direct, "/chat/completions", theirs), lambda: send(  # noqa: B023
                        ours, "/v1/chat/completions", through)) for i in range(ROUNDS)]
                    direct_ms = statistics.median(b for b, _ in rounds)
                    overhead = statistics.median(m - b for b, m in rounds)
                    # value: the overhead; baseline: the request sent directly
                    rows.append(Row(f"remote chat, {name}: overhead", overhead, direct_ms,
                                    "ms", f"overhead ≤ {TARGET_MS:g} ms", overhead <= TARGET_MS))
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            peer.kill()
    return rows


if __name__ == "__main__":
    for row in run():
        print(row if isinstance(row, str) else row.line())
