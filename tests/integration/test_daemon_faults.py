"""Faults the daemon must survive: disconnects, floods, a dying model host, signals, races."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import CHAT_MODEL, RunningDaemon, start_daemon

pytestmark = pytest.mark.integration

LONG = {"model": CHAT_MODEL, "stream": True, "max_tokens": 1500, "temperature": 0.8,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}


def status(daemon: RunningDaemon) -> dict[str, object]:
    with daemon.http() as http:
        result: dict[str, object] = http.get("/api/status").json()
        return result


def test_disconnect_stops_decoding_and_frees_the_slot(daemon: RunningDaemon) -> None:
    with daemon.http() as http, http.stream("POST", "/v1/chat/completions", json=LONG) as resp:
        seen = 0
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                seen += 1
            if seen >= 5:
                break
    closed = time.monotonic()
    freed = None
    while time.monotonic() - closed < 5:
        info = status(daemon)
        models = info["models"]
        assert isinstance(models, list)
        if info["queue_depth"] == 0 and all(m["in_use"] == 0 for m in models):
            freed = time.monotonic() - closed
            break
        time.sleep(0.02)
    assert freed is not None and freed < 0.5, f"slot freed after {freed}"
    # The host stopped decoding too: the next request starts at once and completes.
    with daemon.http() as http:
        reply = http.post("/v1/chat/completions", json={
            "model": CHAT_MODEL, "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200


def test_flood_gets_complete_replies_or_503_with_retry_after(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**daemon_env, "ASSISTANT_MODELS__PARALLEL": "1", "ASSISTANT_MODELS__QUEUE": "8"}
    daemon = start_daemon(env, tmp_path / "d.log")
    body = {"model": CHAT_MODEL, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Say one word."}]}

    async def one(client: httpx.AsyncClient) -> tuple[int, str | None, bool]:
        response = await client.post("/v1/chat/completions", json=body)
        complete = response.status_code == 200 and bool(
            response.json()["choices"][0]["finish_reason"])
        return response.status_code, response.headers.get("retry-after"), complete

    async def flood() -> list[tuple[int, str | None, bool]]:
        limits = httpx.Limits(max_connections=200)
        async with daemon.async_http(timeout=600, limits=limits) as client:
            return await asyncio.wait_for(
                asyncio.gather(*(one(client) for _ in range(200))), 900)

    try:
        results = asyncio.run(flood())
    finally:
        daemon.stop()
    ok = [r for r in results if r[0] == 200]
    busy = [r for r in results if r[0] == 503]
    assert len(ok) + len(busy) == 200, {r[0] for r in results}
    assert all(complete for _, _, complete in ok)
    assert all(retry and int(retry) >= 1 for _, retry, _ in busy)
    assert len(ok) >= 9  # at least the one running and the eight queued


def test_model_host_killed_mid_stream(daemon: RunningDaemon) -> None:
    with daemon.http() as http:
        http.post("/v1/chat/completions", json={**LONG, "stream": False, "max_tokens": 1})
        host_pid = status(daemon)["host_pid"]
        assert isinstance(host_pid, int)
        events = []
        killed = False
        with http.stream("POST", "/api/turns", json={"text": "Tell me a long story.",
                                                     "max_tokens": 1500}) as resp:
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if not killed and len([e for e in events if e["type"] == "delta"]) == 3:
                        os.kill(host_pid, signal.SIGKILL)
                        killed = True
        assert events[-1]["type"] == "error"
        assert "host" in events[-1]["message"]
        reply = http.post("/v1/chat/completions", json={
            "model": CHAT_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
        assert status(daemon)["host_pid"] != host_pid


def test_model_host_killed_mid_batch_fails_every_stream(daemon: RunningDaemon) -> None:
    """Three replies decoding in one batch (parallel = 4) when the host dies: each stream ends
    with an error event, none hangs, and the next request gets a new host."""
    with daemon.http() as http:
        http.post("/v1/chat/completions", json={**LONG, "stream": False, "max_tokens": 1})
        host_pid = status(daemon)["host_pid"]
        assert isinstance(host_pid, int)

    async def one(client: httpx.AsyncClient, i: int, going: asyncio.Event) -> tuple[int, str]:
        deltas, last = 0, ""
        # Neither end-of-text token (smollm2's 0 and 2): no stream may end before the kill.
        body = {**LONG, "logit_bias": {"0": -100, "2": -100},
                "messages": [{"role": "user", "content": f"Story {i}: a long one."}]}
        async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data: {"):
                    last = line
                    deltas += '"content"' in line
                    if deltas >= 2:
                        going.set()
        return deltas, last

    async def run() -> list[tuple[int, str]]:
        async with daemon.async_http(timeout=300) as client:
            events = [asyncio.Event() for _ in range(3)]
            tasks = [asyncio.create_task(one(client, i, e)) for i, e in enumerate(events)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 300)
            os.kill(host_pid, signal.SIGKILL)
            return await asyncio.wait_for(asyncio.gather(*tasks), 120)

    results = asyncio.run(run())
    for deltas, last in results:
        assert deltas >= 2
        error = json.loads(last[6:])["error"]
        assert error["code"] == "stream_error", last
        assert (error["status"], error["retry_after"]) == (503, 1), last  # worth retrying
    with daemon.http() as http:
        reply = http.post("/v1/chat/completions", json={
            "model": CHAT_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
    assert status(daemon)["host_pid"] != host_pid


def test_sigterm_during_three_streams_exits_cleanly(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**daemon_env, "ASSISTANT_DAEMON__SHUTDOWN_GRACE": "3"}
    daemon = start_daemon(env, tmp_path / "d.log")

    async def stream(client: httpx.AsyncClient) -> int:
        chunks = 0
        try:
            async with client.stream("POST", "/v1/chat/completions", json=LONG) as resp:
                async for _ in resp.aiter_lines():
                    chunks += 1
        except httpx.HTTPError:
            pass
        return chunks

    async def run() -> float:
        async with daemon.async_http() as client:
            tasks = [asyncio.create_task(stream(client)) for _ in range(3)]
            await asyncio.sleep(2.0)
            sent = time.monotonic()
            daemon.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            return sent

    sent = asyncio.run(run())
    code = daemon.proc.wait(30)
    elapsed = time.monotonic() - sent
    assert code == 0, daemon.log_text()[-2000:]
    assert elapsed < 3 + 5, f"took {elapsed:.1f} s for a 3 s grace period"
    assert not daemon.socket.exists()
    assert not (daemon.runtime / "assistant.pid").exists()


def test_stale_socket_and_pid_are_replaced(daemon_env: dict[str, str], tmp_path: Path) -> None:
    runtime = Path(daemon_env["ASSISTANT_RUNTIME_DIR"])
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(runtime / "assistant.sock"))
    stale.close()  # a socket file with nobody behind it, as a killed daemon leaves
    (runtime / "assistant.pid").write_text("999999\n")
    daemon = start_daemon(daemon_env, tmp_path / "d.log")
    try:
        assert (runtime / "assistant.pid").read_text().strip() == str(daemon.proc.pid)
    finally:
        assert daemon.stop() == 0


def test_two_daemons_at_once_exactly_one_runs(daemon_env: dict[str, str], tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-m", "assistant", "serve"], env=daemon_env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.05)
        losers = [p for p in procs if p.poll() is not None]
        assert len(losers) == 1
        loser = losers[0]
        assert loser.returncode == 1
        assert loser.stderr is not None
        message = loser.stderr.read().decode()
        winner = next(p for p in procs if p is not loser)
        assert f"already running (pid {winner.pid}" in message
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)


def test_tcp_requires_the_token(daemon_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = start_daemon(daemon_env, tmp_path / "d.log", "--tcp", f"127.0.0.1:{port}")
    try:
        token = (daemon.runtime / "token").read_text().strip()
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health").status_code == 401
        wrong = httpx.get(f"{base}/health", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = httpx.get(f"{base}/health", headers={"Authorization": f"Bearer {token}"})
        assert good.status_code == 200
        assert token not in good.text
    finally:
        daemon.stop()


def test_model_that_fails_to_load_is_reported_and_others_still_work(
    daemon: RunningDaemon, tmp_path: Path
) -> None:
    import numpy as np
    from gguf import GGUFWriter  # a well-formed file whose tensors llama.cpp cannot use

    path = tmp_path / "broken.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_context_length(2048)
    writer.add_tensor("junk", np.zeros(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    added = subprocess.run(
        [sys.executable, "-m", "assistant", "models", "add", str(path), "--name", "broken"],
        env=daemon.env, capture_output=True, text=True,
    )
    assert added.returncode == 0, added.stderr
    with daemon.http() as http:
        failed = http.post("/v1/chat/completions", json={
            "model": "broken", "messages": [{"role": "user", "content": "hi"}]})
        assert failed.status_code == 503
        assert "broken" in failed.json()["error"]["message"]
        ok = http.post("/v1/chat/completions", json={
            "model": CHAT_MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200
