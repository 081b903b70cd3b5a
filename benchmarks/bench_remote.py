"""What a remote engine costs through the daemon: the same short T=0 chat request sent to a
real engine directly and through the daemon (model ``peer/…``), taking turns, in the same run.

The engine is llama-cpp-python's own server on smollm2-135m (the peer of
tests/integration/test_remote_engine.py). Every request is the same, so the engine reads the
prompt from its cache and both sides ask it for the same little work; the figure is the median
over the rounds of each side, and the overhead is the difference of the two medians. The
native ``/api/turns`` (routing skipped by naming the skill; the turn stored) is shown beside
it, without a target: it does more than pass a request on.
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

ROUNDS = 40
TARGET_MS = 5.0
BODY = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4,
        "temperature": 0, "seed": 1}


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


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


def turn(http: httpx.Client, model: str) -> None:
    body = {"text": "Say hi.", "skill": "chat", "model": model, "max_tokens": 4,
            "temperature": 0}
    with http.stream("POST", "/api/turns", json=body) as response:
        assert response.status_code == 200, response.read()
        last = [line for line in response.iter_lines() if line.startswith("data:")][-1]
    assert json.loads(last[5:])["type"] == "done", last


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
                theirs = {**BODY, "model": ALIAS}
                through = {**BODY, "model": f"peer/{ALIAS}"}
                for name, send in (("non-streamed", plain), ("streamed", streamed)):
                    for _ in range(3):  # warm: connections, the engine's prompt cache
                        send(direct, "/chat/completions", theirs)
                        send(ours, "/v1/chat/completions", through)
                    base, mine = [], []
                    for _ in range(ROUNDS):
                        base.append(timed(lambda: send(  # noqa: B023
                            direct, "/chat/completions", theirs)))
                        mine.append(timed(lambda: send(  # noqa: B023
                            ours, "/v1/chat/completions", through)))
                    direct_ms = statistics.median(base)
                    overhead = statistics.median(mine) - direct_ms
                    # value: the overhead; baseline: the request sent directly
                    rows.append(Row(f"remote chat, {name}: overhead", overhead, direct_ms,
                                    "ms", f"overhead ≤ {TARGET_MS:g} ms", overhead <= TARGET_MS))
                for _ in range(3):
                    turn(ours, f"peer/{ALIAS}")
                turns = [timed(lambda: turn(ours, f"peer/{ALIAS}")) for _ in range(ROUNDS // 2)]
                base = [timed(lambda: streamed(direct, "/chat/completions", theirs))
                        for _ in range(ROUNDS // 2)]
                rows.append(Row("remote turn (/api/turns, stored): overhead",
                                statistics.median(turns) - statistics.median(base),
                                statistics.median(base), "ms", "shown only"))
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            peer.kill()
    return rows


if __name__ == "__main__":
    for row in run():
        print(row if isinstance(row, str) else row.line())
