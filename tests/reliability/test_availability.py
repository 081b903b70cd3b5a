"""Issue 21's availability acceptance test: the owner is served while an attacker loop runs.

An attacker with the token (over TCP) floods ``/v1/embeddings`` with the largest jobs the caps
allow and leaves each after 2 s, sends long searches and over-long chat turns, while 1,100
silent connections without the token re-open as the daemon closes them. Meanwhile, on the
Unix socket, the owner's chat turns complete, ``/health`` answers within 1 s at the 95th
percentile, the model host stays under its memory budget, and chat is still available at the
end (five over-long turns once switched it off until a restart).

The attacker runs in a process of its own, as a real one does: the owner's client must not share
an interpreter lock with 1,100 sockets and six flooding threads.

At fd02cda ``/health`` took 1.4 s at the 95th percentile (0.45 s with the flood alone): three
quarters of the event loop went to the flood's churn (asyncio built a transport, a protocol and
a task for each silent connection before the budget refused it), and each streamed piece of the
owner's reply waited for a new thread to start for the bundled guard's output filter. With the
budget deciding at accept (:mod:`assistant.daemon.acceptor`) and hook threads reused
(:mod:`assistant.hook_threads`): 0.52 s and 0.57 s in two runs on this 2-core machine (0.11 s
with the flood alone).

The owner's turns then failed now and then: one ran into the skill's 60 s limit. Its reply
decoded at 2-8 tokens a second against 80 alone: the attacker's embedding jobs (onnxruntime's
threads) and two long searches took the CPU from llama.cpp's two threads, which wait on each
other at every step. With embedding and searches at background priority
(:mod:`assistant.priority`): a median of 24-28 tok/s and 13-21 turns in 20 s, against 4.5
tok/s and 2 turns at c3a4ef5 in the same test. (Turning onnxruntime's spinning off as well
made no difference beyond the noise: 24-27 against 28.)
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx
import pytest

from assistant.config import load_settings
from assistant.priority import BACKGROUND_NICE
from assistant.store import Store
from assistant.testing import RunningDaemon, daemon_environment, start_daemon
from tests.conftest import TEST_MODELS_DIR
from tests.integration.conftest import CHAT_MODEL, EMBED_MODEL, require_models
from tests.reliability.test_connections import ATTACKERS, LOGIN_SOFT_LIMIT, Flood, soft_nofile
from tests.reliability.test_http import free_port
from tests.reliability.test_search_bounds import SLOW
from tests.reliability.test_search_bounds import _fill as fill_messages

OWNER_S = 20.0
ATTACK_WARMUP_S = 3.0  # the attacker's process starts, its flood opens
# smollm2 sampled at the default temperature now and then loops to the end of its context
# ("I'm not sure I'm not sure … not not not"): 1,900 tokens, longer than the skill's 60 s once
# decoding shares the CPU with the attack, or on a slow CI machine even alone (the warm-up turn
# before the attack was cancelled so in CI at 969ef8f). How long a reply the model writes is not
# what is measured here; how fast it is written is printed.
OWNER_REPLY_TOKENS = 64
LONG_TEXT = " ".join(["attack"] * 5000)  # past smollm2's 2,048-token context in tests
# 262 texts of 1,000 characters, words of 4 letters: within [embeddings]' caps (262,144 in all).
EMBED_JOB = [f"{i:04d} " + " ".join(["word"] * 199) for i in range(262)]


@pytest.fixture
def attacked(tmp_path: Path) -> Iterator[tuple[RunningDaemon, int]]:
    require_models()
    runtime = Path(tempfile.mkdtemp(prefix="aa-", dir="/tmp"))
    port = free_port()
    env = daemon_environment(tmp_path / "data", runtime / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR,
                             extra_env={"ASSISTANT_DAEMON__TCP": f'"127.0.0.1:{port}"'})
    store = Store.open(load_settings(environ=env))
    fill_messages(store)  # what the long searches search
    store.close()
    with soft_nofile(LOGIN_SOFT_LIMIT):
        daemon = start_daemon(env, tmp_path / "daemon.log")
    yield daemon, port
    daemon.stop()
    shutil.rmtree(runtime, ignore_errors=True)


def _turn(http: httpx.Client, text: str, **params: object) -> dict[str, object]:
    """The last event of a turn (``done`` or ``error``), with the turn's ``notices``."""
    with http.stream("POST", "/api/turns", json={"text": text, **params}) as reply:
        if reply.status_code != 200:
            reply.read()
            return {"type": "http", "status": reply.status_code, "body": reply.text[:200]}
        events = [json.loads(line[5:]) for line in reply.iter_lines()
                  if line.startswith("data:")]
    notices = [e.get("message") for e in events if e.get("type") == "notice"]
    return {**events[-1], "notices": notices} if events else {"type": "none"}


def _outcome(last: dict[str, object]) -> object:
    return last.get("code") or last.get("status")


class Attacker:
    """Threads each running one attack in a loop until :meth:`stop`; what they got, counted."""

    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.auth = {"Authorization": f"Bearer {token}"}
        self.seen: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run(self, name: str, attack: Callable[[httpx.Client], httpx.Response | object],
            timeout: float, threads: int = 1) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                with httpx.Client(base_url=self.base, headers=self.auth,
                                  timeout=timeout) as http:
                    try:
                        got = attack(http)
                        code = got.status_code if isinstance(got, httpx.Response) else got
                        self.seen[f"{name} {code}"] += 1
                    except httpx.HTTPError as exc:
                        self.seen[f"{name} {type(exc).__name__}"] += 1
                        time.sleep(0.05)

        for _ in range(threads):
            thread = threading.Thread(target=loop, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def attack(port: int, token: str, stop: EventType, counts: Queue[dict[str, int]]) -> None:
    """The attacker, in a process of its own (as a real one is: the owner's client must not
    share an interpreter lock with 1,100 sockets and six flooding threads): runs every attack
    until ``stop`` is set, then puts what it got in ``counts``."""
    attacker = Attacker(port, token)
    with soft_nofile(4 * ATTACKERS):
        flood = Flood(port)
        try:
            flood.start()
            attacker.run("embeddings", lambda http: http.post(
                "/v1/embeddings", json={"model": EMBED_MODEL, "input": EMBED_JOB}),
                timeout=2.0, threads=2)
            attacker.run("search", lambda http: http.get("/api/search", params={"q": SLOW}),
                         timeout=10.0, threads=3)
            attacker.run("long turn", lambda http: _outcome(_turn(http, f"/chat {LONG_TEXT}")),
                         timeout=30.0)
            stop.wait()
        finally:
            attacker.stop()
            flood.stop()
            flood.close()
    counts.put({**attacker.seen, "silent connections re-opened": flood.reopened})


def _nices(pid: int) -> dict[int, int]:
    """The niceness of each of ``pid``'s threads, by thread id."""
    nices = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # ended meanwhile
            nices[int(task.name)] = os.getpriority(os.PRIO_PROCESS, int(task.name))
    return nices


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_the_owner_is_served_while_an_attacker_loop_runs(
        attacked: tuple[RunningDaemon, int]) -> None:
    daemon, port = attacked
    token = (daemon.runtime / "token").read_text().strip()
    with daemon.http(timeout=120) as owner:
        # Both models loaded before the attack: what is measured is serving, not loading.
        assert _turn(owner, "/chat Say hello.",
                     max_tokens=OWNER_REPLY_TOKENS)["status"] == "complete"
        embedded = owner.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": "hi"})
        assert embedded.status_code == 200, embedded.text
    [host] = daemon.children()
    # Embedding runs at background priority (assistant.priority), the host's other threads
    # (llama.cpp's among them) at the daemon's own.
    nices = _nices(host)
    assert max(nices.values()) == min(19, nices[host] + BACKGROUND_NICE), nices
    budget_mb = load_settings(environ=daemon.env).models.memory_budget_mb
    health_s: list[float] = []
    turns: list[dict[str, object]] = []
    spawn = multiprocessing.get_context("spawn")
    stop, counts = spawn.Event(), spawn.Queue()
    attacking = spawn.Process(target=attack, args=(port, token, stop, counts))
    attacking.start()
    try:
        time.sleep(ATTACK_WARMUP_S)

        def chat() -> None:
            with daemon.http(timeout=120) as http:
                while time.monotonic() < deadline:
                    began = time.monotonic()
                    turns.append({**_turn(http, "/chat Name one colour.",
                                          max_tokens=OWNER_REPLY_TOKENS),
                                  "took_s": round(time.monotonic() - began, 1)})

        deadline = time.monotonic() + OWNER_S
        talker = threading.Thread(target=chat)
        talker.start()
        with daemon.http(timeout=5.0) as http:
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert http.get("/health").status_code == 200
                health_s.append(time.monotonic() - started)
                time.sleep(0.2)
        talker.join(120)
    finally:
        stop.set()
        seen = Counter(counts.get(timeout=120))
        attacking.join(30)
    peak = _peak_mb(host)
    searched = _nices(daemon.proc.pid)  # the search threads, lowered as well
    assert max(searched.values()) == min(19, searched[daemon.proc.pid] + BACKGROUND_NICE)
    p95 = statistics.quantiles(health_s, n=20)[-1]
    rates = [round(float(t["timings"]["tokens_per_s"]), 1) for t in turns  # type: ignore[index]
             if "tokens_per_s" in (t.get("timings") or {})]  # type: ignore[operator]
    print(f"owner: {len(turns)} turns {[(t.get('status'), t['took_s']) for t in turns]}, "
          f"decoding at {rates} tok/s (median {statistics.median(rates or [0]):.1f}), /health "
          f"p95 {p95 * 1000:.0f} ms max {max(health_s) * 1000:.0f} ms ({len(health_s)}); host "
          f"peak {peak:.0f} MB of a {budget_mb} MB budget; attacker: {dict(seen)}")
    assert p95 < 1.0
    assert turns and all(t.get("status") == "complete" for t in turns), (
        [(t.get("status"), t["took_s"], t.get("notices")) for t in turns],
        daemon.log_text()[-3000:])
    assert peak < budget_mb
    assert seen["long turn context_length_exceeded"] >= 5, seen
    with daemon.http(timeout=120) as owner:
        states = {s["name"]: s["state"] for s in owner.get("/api/skills").json()["skills"]}
        assert states["chat"] == "available", states
        assert _turn(owner, "/chat Say goodbye.",
                     max_tokens=OWNER_REPLY_TOKENS)["status"] == "complete"
