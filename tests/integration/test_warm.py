"""Warm conversations: a conversation's model state survives a switch and a restart."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import CHAT_MODEL, RunningDaemon, start_daemon

pytestmark = pytest.mark.integration

FACTS = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(40))
A = [{"role": "user", "content": FACTS + " Which fact mentions 7?"}]
B = [{"role": "user", "content": "Tell me about cats. " * 30}]
# The default models.parallel: so many other conversations take every sequence of the model.
PARALLEL = 4
OTHERS = [[{"role": "user", "content": f"Tell me about {animal}. " * 30}]
          for animal in ("cats", "dogs", "owls", "eels")][:PARALLEL]


def ask(daemon: RunningDaemon, messages: list[dict[str, str]],
        max_tokens: int = 12) -> dict[str, Any]:
    with daemon.http(300) as http:
        reply = http.post("/v1/chat/completions", json={
            "model": CHAT_MODEL, "messages": messages, "max_tokens": max_tokens,
            "temperature": 0})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def chat(daemon: RunningDaemon, messages: list[dict[str, str]], max_tokens: int = 12) -> str:
    text: str = ask(daemon, messages, max_tokens)["choices"][0]["message"]["content"]
    return text


def cache(daemon: RunningDaemon) -> dict[str, Any]:
    with daemon.http() as http:
        states: dict[str, Any] = http.get("/api/status").json()["state_cache"][CHAT_MODEL]
        return states


def test_switching_back_restores_the_state_and_replies_as_recomputation_does(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    warm = start_daemon(daemon_env, tmp_path / "warm.log")
    try:
        first = chat(warm, A)
        followup = [*A, {"role": "assistant", "content": first},
                    {"role": "user", "content": "And 8?"}]
        for other in OTHERS:  # other conversations take every sequence, A's last
            chat(warm, other)
        restored = chat(warm, followup)
        stats = cache(warm)
        assert stats["hits"] >= 1, stats
        assert stats["entries"] >= 2 and stats["disk_bytes"] > 0
    finally:
        warm.stop()

    cold_env = {**daemon_env, "ASSISTANT_MODELS__STATE_RAM_MB": "0",
                "ASSISTANT_MODELS__STATE_DISK_MB": "0",
                "ASSISTANT_DATA_DIR": str(tmp_path / "cold-data")}
    cold = start_daemon(cold_env, tmp_path / "cold.log")
    try:
        recomputed = chat(cold, followup)
        assert cache(cold)["hits"] == 0
    finally:
        cold.stop()
    assert restored == recomputed


def two_then_another(daemon: RunningDaemon, saved: int) -> list[dict[str, Any]]:
    """A and B at once (A's longer reply still runs when B comes: a sequence each), C once
    both are idle and ``saved`` states are kept, then the next turn of A and of B: their
    usages."""
    with ThreadPoolExecutor(2) as pool:
        first = list(pool.map(lambda m: chat(daemon, *m), ((A, 64), (B, 12))))
    time.sleep(2.0)  # idle past IDLE_SAVE (1 s): the host saves both, if it keeps states
    deadline = time.monotonic() + 30
    while cache(daemon)["entries"] < saved and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cache(daemon)["entries"] == saved
    chat(daemon, OTHERS[2])  # takes one of the two sequences
    return [ask(daemon, [*messages, {"role": "assistant", "content": reply},
                         {"role": "user", "content": "And then?"}])["usage"]
            for messages, reply in zip((A, B), first, strict=True)]


def test_saved_conversations_leave_the_buffer_to_the_next_and_come_back_restored(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    """Once a conversation's state is saved, its cells are dropped when another conversation
    starts on another sequence (every cell slows each decode step): its next turn restores
    the state rather than reading on from a live sequence."""
    daemon = start_daemon(daemon_env, tmp_path / "daemon.log")
    try:
        two_then_another(daemon, 2)
        assert cache(daemon)["hits"] == 2, cache(daemon)
    finally:
        daemon.stop()


def test_without_saved_states_a_live_sequence_is_kept_for_its_conversation(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    """A sequence whose state no cache holds (here none is kept) is never emptied for
    another: of A and B, the one C did not take reads on from where it was."""
    env = {**daemon_env, "ASSISTANT_MODELS__STATE_RAM_MB": "0",
           "ASSISTANT_MODELS__STATE_DISK_MB": "0"}
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        usages = two_then_another(daemon, 0)
        kept = max(u["prompt_tokens_details"]["cached_tokens"] for u in usages)
        assert kept > 100, usages
        assert cache(daemon)["hits"] == 0
    finally:
        daemon.stop()


def test_a_restarted_daemon_continues_from_the_saved_state(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    daemon = start_daemon(daemon_env, tmp_path / "one.log")
    try:
        first = chat(daemon, A)
    finally:
        assert daemon.stop() == 0
    followup = [*A, {"role": "assistant", "content": first}, {"role": "user", "content": "And 8?"}]
    again = start_daemon(daemon_env, tmp_path / "two.log")
    try:
        chat(again, followup)
        stats = cache(again)
        assert stats["hits"] == 1, stats
    finally:
        again.stop()


def test_deleting_a_conversation_deletes_its_saved_model_states(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    states = Path(daemon_env["ASSISTANT_DATA_DIR"]) / "states"
    daemon = start_daemon(daemon_env, tmp_path / "daemon.log")
    try:
        with daemon.http(300) as http:
            kept = http.post("/api/turns", json={"text": FACTS + " Which fact mentions 3?",
                                                  "skill": "chat", "max_tokens": 4})
            gone = http.post("/api/turns", json={"text": FACTS + " Which fact mentions 9?",
                                                  "skill": "chat", "max_tokens": 4})
            assert kept.status_code == gone.status_code == 200
            ids = [json.loads(r.text.split("data:", 1)[1].split("\n", 1)[0])["conversation_id"]
                   for r in (kept, gone)]
            deadline = time.monotonic() + 30  # a state is saved just after its reply is sent
            while len(list(states.glob("*/*.kv"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(list(states.glob("*/*.kv"))) == 2
            assert http.delete(f"/api/conversations/{ids[1]}").status_code == 204
            assert cache(daemon)["entries"] == 1
        files = list(states.glob("*/*.kv"))
        assert len(files) == 1 and ids[0].encode() in files[0].read_bytes()[:200]
    finally:
        daemon.stop()


def test_a_prefix_conversations_share_is_read_once(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    """A new conversation reads on from the prefix a live sequence shares with it (here a
    system prompt), with no state restored; /v1 usage says how much was not read again."""
    system = {"role": "system", "content": "You are a careful assistant. " + FACTS[:400]}
    daemon = start_daemon(daemon_env, tmp_path / "daemon.log")

    def ask(question: str) -> dict[str, Any]:
        with daemon.http(300) as http:
            reply = http.post("/v1/chat/completions", json={
                "model": CHAT_MODEL, "max_tokens": 4, "temperature": 0,
                "messages": [system, {"role": "user", "content": question}]})
        assert reply.status_code == 200, reply.text
        usage: dict[str, Any] = reply.json()["usage"]
        return usage

    def saved(n: int) -> None:
        deadline = time.monotonic() + 30
        while cache(daemon)["entries"] < n and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cache(daemon)["entries"] == n, cache(daemon)

    try:
        first = ask("Which fact mentions 7?")
        assert first["prompt_tokens_details"] == {"cached_tokens": 0}
        saved(1)
        second = ask("Which fact mentions 8?")
        shared = second["prompt_tokens_details"]["cached_tokens"]
        assert shared > 100 and shared < second["prompt_tokens"]
        saved(2)
        third = ask("Which fact mentions 9?")
        assert third["prompt_tokens_details"]["cached_tokens"] == shared
        assert cache(daemon)["hits"] == 0  # read on from the live sequence, nothing restored
    finally:
        daemon.stop()
