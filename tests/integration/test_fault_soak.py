"""Faults that heal (issue 18), all at once: 200 turns from a few clients, alternating
``/api/turns`` and ``/v1/chat/completions`` (the model ``assistant`` and the raw model,
streamed and not), while the model host is SIGKILLed 20 times mid-turn and SIGSTOPped once
(the watchdog, ``models.host_deadline``, must find and kill it). Every fourth kill strikes a
host just started, before its model has loaded.

Every turn completes or fails with a 503 and a Retry-After (the HTTP status, or on a stream
already under way an error event saying 503), never a 500 or a hang; chat answers at the end;
the database passes ``integrity_check``; every acknowledged user message is stored with its
reply, and no user message is left without one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.testing import RunningDaemon, daemon_environment
from tests.conftest import TEST_MODELS_DIR
from tests.integration.conftest import CHAT_MODEL, start_daemon

pytestmark = pytest.mark.integration

TURNS = 200
CLIENTS = 4
KILLS = 20
DEADLINE = 2.0  # models.host_deadline: the stopped host is killed within about 1.5x this
MAX_TOKENS = 12
TURN_TIMEOUT = 60.0  # a turn taking longer is a hang
# Turn i is of kind KINDS[i % 8]: every other one /api/turns, the rest each /v1 variant.
KINDS = ("turns", "v1-assistant", "turns", "v1-assistant-stream",
         "turns", "v1-raw", "turns", "v1-raw-stream")


@dataclass
class Outcome:
    index: int
    kind: str
    nonce: str
    result: str = "hang"  # complete / 503 / other / hang
    status: int | None = None  # the HTTP status
    retry_after: str | int | None = None  # the header, or a stream's error event's field
    detail: str = ""
    conversation_id: str | None = None  # /api/turns: acknowledged by its stream
    user_message_id: str | None = None


@dataclass
class Soak:
    """What the clients and the killer share."""

    outcomes: list[Outcome] = field(default_factory=list)
    finished: int = 0
    streaming: int = 0  # turns whose reply has begun and not ended: a kill now is mid-turn
    killed: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    at_load: int = 0  # kills of a host before its model loaded
    watchdog_took: float | None = None
    problems: list[str] = field(default_factory=list)


def failed_with_503(outcome: Outcome, status: int | None, retry_after: str | int | None,
                    detail: str) -> None:
    outcome.result = "503" if status == 503 else "other"
    outcome.retry_after, outcome.detail = retry_after, detail[:300]


async def api_turn(client: httpx.AsyncClient, soak: Soak, outcome: Outcome,
                   conversation: str | None) -> None:
    body: dict[str, Any] = {"text": f"{outcome.nonce}: say hello", "skill": "chat",
                            "max_tokens": MAX_TOKENS}
    if conversation is not None:
        body["conversation_id"] = conversation
    async with client.stream("POST", "/api/turns", json=body) as resp:
        outcome.status = resp.status_code
        if resp.status_code != 200:
            await resp.aread()
            failed_with_503(outcome, resp.status_code, resp.headers.get("retry-after"),
                            resp.text)
            return
        last: dict[str, Any] = {}
        begun = False
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                last = json.loads(line[5:])
                outcome.conversation_id = last.get("conversation_id", outcome.conversation_id)
                outcome.user_message_id = last.get("user_message_id", outcome.user_message_id)
                if last["type"] == "delta" and not begun:
                    begun = True
                    soak.streaming += 1
        finally:
            soak.streaming -= begun
    if last.get("type") == "done" and last.get("status") == "complete":
        outcome.result = "complete"
    elif last.get("type") == "error":
        failed_with_503(outcome, last.get("status"), last.get("retry_after"), str(last))
    else:
        outcome.result, outcome.detail = "other", f"stream ended with {last}"


async def v1_turn(client: httpx.AsyncClient, soak: Soak, outcome: Outcome) -> None:
    assistant = outcome.kind.startswith("v1-assistant")
    stream = outcome.kind.endswith("-stream")
    text = f"{outcome.nonce}: say hello"
    body = {"model": "assistant" if assistant else CHAT_MODEL, "stream": stream,
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": f"/chat {text}" if assistant else text}]}
    if not stream:
        resp = await client.post("/v1/chat/completions", json=body)
        outcome.status = resp.status_code
        if resp.status_code == 200 and resp.json()["choices"][0]["finish_reason"]:
            outcome.result = "complete"
        else:
            failed_with_503(outcome, resp.status_code, resp.headers.get("retry-after"),
                            resp.text)
        return
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        outcome.status = resp.status_code
        if resp.status_code != 200:
            await resp.aread()
            failed_with_503(outcome, resp.status_code, resp.headers.get("retry-after"),
                            resp.text)
            return
        finish, error, done, begun = None, None, False, False
        try:
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        error = chunk["error"]
                    for choice in chunk.get("choices", []):
                        finish = choice.get("finish_reason") or finish
                        if choice.get("delta", {}).get("content") and not begun:
                            begun = True
                            soak.streaming += 1
        finally:
            soak.streaming -= begun
    if error is not None:
        failed_with_503(outcome, error.get("status"), error.get("retry_after"), str(error))
    elif done and finish:
        outcome.result = "complete"
    else:
        outcome.result, outcome.detail = "other", f"stream ended: finish {finish}, [DONE] {done}"


async def client_loop(daemon: RunningDaemon, soak: Soak, turns: collections.deque[int],
                      run: str) -> None:
    conversation: str | None = None  # each client goes on in the conversation it last had
    async with daemon.async_http(timeout=TURN_TIMEOUT + 30) as client:
        while turns:
            index = turns.popleft()
            outcome = Outcome(index, KINDS[index % len(KINDS)], f"soak {run}-{index}")
            soak.outcomes.append(outcome)
            try:
                if outcome.kind == "turns":
                    await asyncio.wait_for(api_turn(client, soak, outcome, conversation),
                                           TURN_TIMEOUT)
                    if outcome.conversation_id is not None:
                        conversation = outcome.conversation_id
                else:
                    await asyncio.wait_for(v1_turn(client, soak, outcome), TURN_TIMEOUT)
            except TimeoutError:
                outcome.result, outcome.detail = "hang", f"no end in {TURN_TIMEOUT} s"
            except httpx.HTTPError as exc:
                outcome.result, outcome.detail = "other", f"{type(exc).__name__}: {exc}"
            soak.finished += 1


async def killer(daemon: RunningDaemon, soak: Soak) -> None:
    """SIGKILL the host KILLS times, spaced over the run, each while a reply is streaming, but
    every fourth time the host started after the last kill, before its model has loaded (the
    turns that started it wait on that load); half way, SIGSTOP it instead and wait for the
    watchdog to kill it."""
    stop_at = KILLS // 2
    for k in range(KILLS + 1):
        at_load = k % 4 == 3 and k != stop_at
        while not at_load and soak.finished < (k + 1) * TURNS // (KILLS + 3):
            await asyncio.sleep(0.02)
        # The host's pid read once a round: it may exit between two reads of the list.
        while not ((hosts := daemon.children()) and (
                hosts[0] not in soak.killed if at_load else soak.streaming)):
            if soak.finished >= TURNS:
                soak.problems.append(f"the run ended before fault {k + 1} of {KILLS + 1}")
                return
            await asyncio.sleep(0.005)
        pid = hosts[0]
        if at_load:
            soak.at_load += 1
        if k != stop_at:
            os.kill(pid, signal.SIGKILL)
            soak.killed.append(pid)
            continue
        os.kill(pid, signal.SIGSTOP)
        soak.stopped.append(pid)
        sent = time.monotonic()
        while pid in daemon.children() and time.monotonic() - sent < DEADLINE * 5:
            await asyncio.sleep(0.05)
        if pid in daemon.children():
            soak.problems.append(f"the stopped host {pid} was not killed by the watchdog")
            os.kill(pid, signal.SIGKILL)
        else:
            soak.watchdog_took = time.monotonic() - sent


async def soak_run(daemon: RunningDaemon, soak: Soak) -> None:
    turns = collections.deque(range(TURNS))
    run = str(os.getpid())
    clients = [asyncio.create_task(client_loop(daemon, soak, turns, run))
               for _ in range(CLIENTS)]
    faults = asyncio.create_task(killer(daemon, soak))
    try:
        await asyncio.gather(*clients)
    finally:
        faults.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await faults


def stored_turns(daemon: RunningDaemon) -> dict[str, list[dict[str, Any]]]:
    """Every stored conversation's messages, by conversation id."""
    with daemon.http() as http:
        listed = http.get("/api/conversations", params={"archived": "all", "limit": 1000})
        assert listed.status_code == 200, listed.text
        return {c["id"]: http.get(f"/api/conversations/{c['id']}").json()["messages"]
                for c in listed.json()["conversations"]}


def test_two_hundred_turns_through_twenty_kills_and_a_stop(tmp_path: Path) -> None:
    runtime = Path(f"/tmp/soak-{os.getpid()}")
    env = daemon_environment(tmp_path / "data", runtime / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR,
                             extra_env={"ASSISTANT_MODELS__HOST_DEADLINE": str(DEADLINE)})
    daemon = start_daemon(env, tmp_path / "daemon.log")
    soak = Soak()
    started = time.monotonic()
    try:
        with daemon.http() as http:  # the model loaded, so the first kill finds a host
            warm = http.post("/v1/chat/completions", json={
                "model": CHAT_MODEL, "max_tokens": 1,
                "messages": [{"role": "user", "content": "hi"}]})
            assert warm.status_code == 200, warm.text
        asyncio.run(soak_run(daemon, soak))
        took = time.monotonic() - started

        with daemon.http() as http:  # chat is available at the end
            final = http.post("/api/turns", json={"text": "Say hello once more", "skill": "chat",
                                                   "max_tokens": MAX_TOKENS})
            skills = {s["name"]: s["state"] for s in http.get("/api/skills").json()["skills"]}
        stored = stored_turns(daemon)
    finally:
        for pid in daemon.children():  # never leave a stopped host behind
            os.kill(pid, signal.SIGCONT)
        code = daemon.stop()
        shutil.rmtree(runtime, ignore_errors=True)

    counts = collections.Counter(o.result for o in soak.outcomes)
    print(f"\nsoak: {dict(counts)} in {took:.0f} s; {len(soak.killed)} kills "
          f"({soak.at_load} before the model loaded), "
          f"{len(soak.stopped)} stop (the watchdog took {soak.watchdog_took} s)")
    bad = [o for o in soak.outcomes if o.result not in ("complete", "503")]
    assert not bad, "\n".join(f"{o.index} {o.kind}: {o.result} {o.status} {o.detail}"
                              for o in bad[:10])
    assert len(soak.outcomes) == TURNS
    assert not soak.problems, soak.problems
    assert len(soak.killed) == KILLS and len(soak.stopped) == 1 and soak.at_load == 5
    no_retry = [o for o in soak.outcomes if o.result == "503"
                and not (o.retry_after is not None and int(o.retry_after) >= 1)]
    assert not no_retry, [(o.index, o.kind, o.detail) for o in no_retry[:5]]
    assert counts["complete"] >= TURNS // 2, counts  # faults are rare; most turns complete
    assert counts["503"] >= KILLS // 2, counts  # and the kills did land mid-turn

    assert final.status_code == 200, final.text
    events = [json.loads(line[5:]) for line in final.text.splitlines()
              if line.startswith("data:")]
    assert events[-1]["type"] == "done" and events[-1]["status"] == "complete", events[-1]
    assert skills["chat"] == "available", skills
    assert code == 0, daemon.log_text()[-3000:]

    database = sqlite3.connect(tmp_path / "data" / "assistant.sqlite3")
    try:
        assert database.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        database.close()

    # No user message without its reply, and every acknowledged one is stored with its own.
    messages = {m["id"]: (cid, m) for cid, tree in stored.items() for m in tree}
    replies = {m["parent_id"]: m for _, m in messages.values() if m["role"] == "assistant"}
    orphans = [m for _, m in messages.values() if m["role"] == "user" and m["id"] not in replies]
    assert not orphans, orphans[:3]
    for o in soak.outcomes:
        if o.kind == "turns" and o.user_message_id is not None:
            where, user = messages[o.user_message_id]
            assert where == o.conversation_id and o.nonce in user["content"], (o, user)
            expected = {"complete"} if o.result == "complete" else {"error", "cancelled"}
            assert replies[user["id"]]["status"] in expected, (o, replies[user["id"]])
        elif o.kind.startswith("v1-assistant") and o.result == "complete":
            users = [m for _, m in messages.values()
                     if m["role"] == "user" and m["content"].endswith(f"{o.nonce}: say hello")]
            assert len(users) == 1, (o, users)
            assert replies[users[0]["id"]]["status"] == "complete", (o, replies[users[0]["id"]])
    acknowledged = sum(o.user_message_id is not None for o in soak.outcomes)
    assert acknowledged >= TURNS // 2 - KILLS, acknowledged
