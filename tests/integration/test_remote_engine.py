"""Remote engines against a real peer: llama-cpp-python's own server on smollm2-135m
(tests/integration/peer_engine.py), configured as ``[engines.peer]`` by environment variables.

Beside it, three engines that cannot answer: ``wrongkey`` (the same server, the wrong key),
``nokey`` (a key variable that is not set) and ``gone`` (nothing listens on its port). Local
models keep working while they fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import CHAT_MODEL, RunningDaemon, start_daemon
from tests.integration.peer_engine import ALIAS, KEY, PeerEngine, free_port

pytestmark = pytest.mark.integration

REMOTE = f"peer/{ALIAS}"
# Every sampling field the daemon sends, given: the same body goes to the peer directly.
T0 = {"temperature": 0, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0,
      "frequency_penalty": 0, "presence_penalty": 0, "seed": 7, "max_tokens": 32,
      "messages": [{"role": "user", "content": "Name three colours of the rainbow."}]}


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerEngine]:
    engine = PeerEngine(tmp_path_factory.mktemp("peer") / "peer.log")
    engine.start()
    yield engine
    engine.kill()


@pytest.fixture
def engines_daemon(daemon_env: dict[str, str], peer: PeerEngine,
                   tmp_path: Path) -> Iterator[RunningDaemon]:
    env = {**daemon_env, "PEER_KEY": KEY, "WRONG_PEER_KEY": "not-the-key"}
    env.pop("UNSET_PEER_KEY", None)
    for name, url, variable in (
            ("PEER", peer.base_url, "PEER_KEY"), ("WRONGKEY", peer.base_url, "WRONG_PEER_KEY"),
            ("NOKEY", peer.base_url, "UNSET_PEER_KEY"),
            ("GONE", f"http://127.0.0.1:{free_port()}/v1", "")):
        env[f"ASSISTANT_ENGINES__{name}__BASE_URL"] = url
        env[f"ASSISTANT_ENGINES__{name}__API_KEY_ENV"] = variable
    env["ASSISTANT_ENGINES__GONE__MODELS"] = '["big-model"]'
    running = start_daemon(env, tmp_path / "daemon.log")
    yield running
    running.stop()


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def streamed_text(http: httpx.Client, body: dict[str, Any],
                  path: str = "/v1/chat/completions") -> str:
    text = []
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                for choice in chunk["choices"]:
                    text.append(choice["delta"].get("content") or "")
    return "".join(text)


def turn_events(http: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    with http.stream("POST", "/api/turns", json=body) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line[5:]) for line in response.iter_lines()
                if line.startswith("data:")]


def test_listed_streamed_like_the_peer_and_local_models_unblocked(
        engines_daemon: RunningDaemon, peer: PeerEngine, tmp_path: Path) -> None:
    with engines_daemon.http(timeout=300) as http:
        def listed() -> dict[str, Any]:
            return {m["id"]: m for m in http.get("/v1/models").json()["data"]}

        models = wait_for(lambda: REMOTE in listed() and listed())
        assert models[REMOTE]["remote"] is True and models[REMOTE]["engine"] == "peer"
        assert models["gone/big-model"]["engine"] == "gone"  # configured: listed while down
        assert CHAT_MODEL in models and "remote" not in models[CHAT_MODEL]

        health = wait_for(lambda: (h := http.get("/health").json())["engines"]["gone"] == "down"
                          and h)
        assert health["engines"] == {"peer": "up", "wrongkey": "key_refused",
                                     "nokey": "key_refused", "gone": "down"}

        ours = streamed_text(http, {**T0, "model": REMOTE})
        with peer.http() as direct:
            theirs = streamed_text(direct, {**T0, "model": ALIAS}, "/chat/completions")
        assert ours == theirs and len(ours) > 10

        # The engine that is down costs a local model nothing.
        down = http.post("/v1/chat/completions", json={**T0, "model": "gone/big-model"})
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "engine_unavailable"
        assert "'gone'" in down.json()["error"]["message"] and "Retry-After" in down.headers
        started = time.monotonic()
        local = http.post("/v1/chat/completions",
                          json={**T0, "model": CHAT_MODEL, "max_tokens": 4})
        assert local.status_code == 200, local.text
        assert time.monotonic() - started < 60

        status = http.get("/api/status").json()
        assert {e["name"]: e["state"] for e in status["engines"]}["peer"] == "up"
        assert any("engine 'gone' cannot be reached" in p for p in status["problems"])

    shown = subprocess.run(
        [sys.executable, "-m", "assistant", "daemon", "status"], env=engines_daemon.env,
        capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert f"engine     peer: up ({peer.base_url}), 1 model," in shown.stdout
    assert "engine     gone: down" in shown.stdout
    assert "problem    engine 'wrongkey' refused the key in WRONG_PEER_KEY" in shown.stdout

    # The running daemon is asked: its engines' states, with the keys of its environment.
    listing = models_list(engines_daemon.env)
    assert "remote, engine peer, up" in next(ln for ln in listing if REMOTE in ln)
    gone = next(ln for ln in listing if "gone/big-model" in ln)
    assert "remote, engine gone, down (engine 'gone' cannot be reached" in gone
    assert any("engine 'wrongkey' refused the key in WRONG_PEER_KEY" in ln for ln in listing)
    assert any("engine 'nokey' needs a key in the environment variable UNSET_PEER_KEY" in ln
               for ln in listing)

    # No daemon: each engine is asked by the command itself.
    alone = models_list({**engines_daemon.env, "ASSISTANT_RUNTIME_DIR": str(tmp_path / "no")})
    assert "remote, engine peer" in next(ln for ln in alone if REMOTE in ln)
    assert any("engine wrongkey refused the key in WRONG_PEER_KEY" in ln for ln in alone)
    assert any("engine nokey needs a key in UNSET_PEER_KEY, which is not set" in ln
               for ln in alone)
    assert not any("engine gone cannot" in ln for ln in alone)  # configured: not asked
    assert any("gone/big-model" in ln for ln in alone)


def models_list(env: dict[str, str]) -> list[str]:
    listing = subprocess.run([sys.executable, "-m", "assistant", "models", "list"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    return listing.stdout.splitlines()


def test_a_wrong_or_missing_key_names_the_variable(engines_daemon: RunningDaemon) -> None:
    with engines_daemon.http(timeout=120) as http:
        wrong = http.post("/v1/chat/completions", json={**T0, "model": f"wrongkey/{ALIAS}"})
        missing = http.post("/v1/chat/completions", json={**T0, "model": f"nokey/{ALIAS}"})
    assert wrong.status_code == missing.status_code == 503
    assert wrong.json()["error"]["code"] == "engine_key_refused"
    assert "WRONG_PEER_KEY" in wrong.json()["error"]["message"]
    assert "401" in wrong.json()["error"]["message"]
    assert "UNSET_PEER_KEY" in missing.json()["error"]["message"]
    assert "not set" in missing.json()["error"]["message"]


def test_peer_killed_mid_stream_then_back(engines_daemon: RunningDaemon,
                                          peer: PeerEngine) -> None:
    # No end-of-text token (smollm2's 0 and 2): the reply cannot end before the kill.
    long = {**T0, "model": REMOTE, "max_tokens": 400, "stream": True,
            "logit_bias": {"0": -100, "2": -100}}
    pieces, last = 0, ""
    with engines_daemon.http(timeout=300) as http:
        with http.stream("POST", "/v1/chat/completions", json=long) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    last = line[6:]
                    pieces += '"content"' in last
                    if pieces == 3:
                        peer.kill()
        error = json.loads(last)["error"]
        assert "engine 'peer' stopped mid-reply" in error["message"], error

        after = http.post("/v1/chat/completions", json={**T0, "model": REMOTE})
        assert after.status_code == 503, after.text
        assert after.json()["error"]["code"] == "engine_unavailable"
        assert "'peer'" in after.json()["error"]["message"]
        assert int(after.headers["Retry-After"]) >= 1
        events = turn_events(http, {"text": "hello", "skill": "chat", "model": REMOTE,
                                    "max_tokens": 8})
        failed = events[-1]  # the stream's last event
        assert (failed["type"], failed["status"], failed["code"]) == (
            "error", 503, "engine_unavailable"), failed
        assert "engine 'peer'" in failed["message"] and failed["retry_after"] >= 1

        peer.start()
        assert streamed_text(http, {**T0, "model": REMOTE})  # the next request works
        events = turn_events(http, {"text": "hello", "skill": "chat", "model": REMOTE,
                                    "max_tokens": 8})
        done = events[-1]
        assert (done["type"], done["status"], done["model"]) == ("done", "complete", REMOTE)
        stored = http.get(f"/api/conversations/{done['conversation_id']}").json()
        reply = stored["messages"][-1]
        assert (reply["role"], reply["status"], reply["model"]) == (
            "assistant", "complete", REMOTE)
        assert reply["content"] == "".join(e["text"] for e in events if e["type"] == "delta")


def test_a_cancel_stops_the_peers_generation(engines_daemon: RunningDaemon,
                                             peer: PeerEngine) -> None:
    """The client leaves after a few pieces of a reply that would run ~1,900 tokens: the
    daemon closes its response from the peer, and the peer stops generating: it says so in
    its log (llama-cpp-python's server checks for a gone client after each chunk), its CPU
    goes idle, and its next request is served at once."""
    long = {**T0, "model": REMOTE, "max_tokens": 1900, "stream": True,
            "logit_bias": {"0": -100, "2": -100}}  # no end-of-text: it cannot end by itself
    said_before = peer.log.read_text().count("Disconnected from client")
    with engines_daemon.http(timeout=300) as http:
        pieces = 0
        with http.stream("POST", "/v1/chat/completions", json=long) as response:
            assert response.status_code == 200, response.read()
            started = time.monotonic()
            generating = peer.cpu_seconds()
            for line in response.iter_lines():
                pieces += line.startswith("data: {") and '"content"' in line
                if pieces == 20:
                    break
            busy = (peer.cpu_seconds() - generating) / (time.monotonic() - started)
        left = time.monotonic()  # the stream is closed: the client has left

        assert wait_for(lambda: peer.log.read_text().count("Disconnected from client")
                        > said_before, timeout=30), peer.log.read_text()[-2000:]
        noticed = time.monotonic() - left
        time.sleep(0.5)  # the chunk in hand when it noticed, if any
        idle_from, idle_cpu = time.monotonic(), peer.cpu_seconds()
        time.sleep(2.0)
        idle = (peer.cpu_seconds() - idle_cpu) / (time.monotonic() - idle_from)
        print(f"peer CPU generating {busy:.2f} s/s, after the cancel {idle:.2f} s/s; "
              f"noticed in {noticed:.2f} s")
        # Generating, the peer keeps its two threads busy (2 s/s on an idle machine; on
        # a loaded one less, still well above this).
        assert idle < 0.15, (busy, idle)

        with peer.http() as direct:
            started = time.monotonic()
            short = direct.post("/chat/completions", json={**T0, "model": ALIAS,
                                                           "max_tokens": 4})
            served = time.monotonic() - started
        assert short.status_code == 200, short.text
        # Behind the long reply (one request at a time), it would wait for ~1,880 tokens.
        assert served < 10, served


def test_tokens_counted_by_the_peers_tokenizer_and_cache_prompt_harmless(
        peer: PeerEngine) -> None:
    """llama-cpp-python's server counts through its /extras/tokenize (found after its 404 for
    /tokenize, then kept); the count is within a few tokens of the prompt it reads for the
    same messages. Sent ``cache_prompt`` (a field it does not know), it answers as before."""
    import asyncio

    from assistant.config import EngineSettings
    from assistant.models.backend import ChatMessage, GenerationParams
    from assistant.models.remote import RemoteEngine

    messages = [ChatMessage("system", "You answer in one short sentence."),
                ChatMessage("user", "Name three colours of the rainbow, and say why the sky "
                                    "is blue. Réponds aussi en français.")]

    async def run() -> tuple[list[int], str, str, bool]:
        engine = RemoteEngine("peer", EngineSettings(
            base_url=peer.base_url, api_key_env="PEER_KEY", cache_prompt=True),
            environ={"PEER_KEY": KEY})
        try:
            counts = [await engine.count_tokens(REMOTE, messages) for _ in range(2)]
            kind = engine.tokenizer.kind
            deltas = [d async for d in engine.chat(REMOTE, messages, GenerationParams(
                max_tokens=8, temperature=0))]
            return (counts, str(kind), "".join(d.text for d in deltas) + "|"
                    + str(deltas[-1].finish_reason), engine.caches_prompt())
        finally:
            await engine.aclose()

    counts, kind, reply, cached = asyncio.run(run())
    assert kind == "/extras/tokenize" and cached and len(reply) > 8, reply
    with peer.http() as direct:  # its stream carries no usage: what it read, asked plainly
        answer = direct.post("/chat/completions", json={
            "model": ALIAS, "max_tokens": 1, "messages": [
                {"role": m.role, "content": m.content} for m in messages]})
    read = answer.json()["usage"]["prompt_tokens"]
    print(f"counted {counts[0]} tokens; the peer read {read}")
    assert counts[0] == counts[1] and read > 20
    assert read <= counts[0] <= read + 6, (counts, read)
