"""The native turn API: stored turns, history, regenerating and editing into branches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import CHAT_MODEL, EMBED_MODEL, RunningDaemon, start_daemon

pytestmark = pytest.mark.integration


def turn(daemon: RunningDaemon, **body: Any) -> list[dict[str, Any]]:
    events = []
    with daemon.http(300) as http, http.stream(
        "POST", "/api/turns", json={"max_tokens": 6, "temperature": 0, **body}
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


def test_turns_are_stored_and_continue_their_conversation(daemon: RunningDaemon) -> None:
    first = turn(daemon, text="My name is Ada.", skill="chat")
    ids = first[0]
    assert first[-1]["type"] == "done" and first[-1]["status"] == "complete"
    second = turn(daemon, text="What is my name?", conversation_id=ids["conversation_id"])
    assert second[0]["conversation_id"] == ids["conversation_id"]
    with daemon.http() as http:
        conv = http.get(f"/api/conversations/{ids['conversation_id']}").json()
    texts = [m["content"] for m in conv["messages"]]
    assert texts[0] == "My name is Ada." and "What is my name?" in texts
    reply = next(m for m in conv["messages"] if m["id"] == ids["message_id"])
    assert reply["status"] == "complete" and reply["skill"] == "chat"
    assert reply["content"] == "".join(e["text"] for e in first if e["type"] == "delta")
    assert reply["completion_tokens"] > 0 and reply["route"]["method"] == "explicit"


def test_regenerate_and_edit_make_branches(daemon: RunningDaemon) -> None:
    first = turn(daemon, text="Say a colour.")
    ids = first[0]
    again = turn(daemon, regenerate=ids["message_id"])
    assert again[0]["user_message_id"] == ids["user_message_id"]
    assert again[0]["message_id"] != ids["message_id"]
    edited = turn(daemon, edit=ids["user_message_id"], text="Say an animal.")
    assert edited[0]["user_message_id"] != ids["user_message_id"]
    with daemon.http() as http:
        conv = http.get(f"/api/conversations/{ids['conversation_id']}").json()
    by_parent: dict[str | None, list[str]] = {}
    for m in conv["messages"]:
        by_parent.setdefault(m["parent_id"], []).append(m["id"])
    assert set(by_parent[ids["user_message_id"]]) == {ids["message_id"], again[0]["message_id"]}
    assert len(by_parent[None]) == 2  # the original question and its edit are siblings
    assert conv["active_path"][-1] == edited[0]["message_id"]


def test_skills_and_bad_turns(daemon: RunningDaemon) -> None:
    with daemon.http() as http:
        names = [s["name"] for s in http.get("/api/skills").json()["skills"]]
        assert {"chat", "translate", "summarize", "qa"} <= set(names)
        empty = http.post("/api/turns", json={"text": "  "})
        assert empty.status_code == 400 and "text" in empty.json()["error"]["message"]
        unknown = http.post("/api/turns", json={"text": "hi", "skill": "nope"})
        assert unknown.status_code == 400 and "nope" in unknown.json()["error"]["message"]


def test_the_daemon_tells_the_context_the_model_runs_with(
        daemon_env: dict[str, str], tmp_path: Path) -> None:
    """A configured context past the trained one (smollm2-135m: 8192) is capped — the model is
    loaded with no more — and the done event, the model list and the load answer all say so:
    clients show it, never work it out."""
    env = {**daemon_env, "ASSISTANT_MODELS__CONTEXT_LENGTH": "16384"}
    running = start_daemon(env, tmp_path / "daemon.log")
    try:
        with running.http() as http:
            listed = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
        assert listed[CHAT_MODEL]["context_length"] == 8192  # trained
        assert listed[CHAT_MODEL]["context"] == 8192
        assert listed[EMBED_MODEL]["context"] is None
        done = turn(running, text="Hello there.", skill="chat")[-1]
        assert done["type"] == "done" and done["status"] == "complete"
        assert done["context"] == 8192
        with running.http() as http:
            loaded = http.post(f"/api/models/{CHAT_MODEL}/load").json()
        assert loaded["info"]["n_ctx"] == 8192 and loaded["context"] == 8192
    finally:
        running.stop()


def test_a_skill_answers_with_its_own_model_and_the_reply_says_which(
        daemon_env: dict[str, str], tmp_path: Path) -> None:
    """``[skills.X] model`` picks the model a skill answers with, unless the request names
    one; the done event and the stored reply name it. A configured model that is not there
    leaves the turn's model to answer, with a notice (once) saying how to get it."""
    import subprocess
    import sys

    from tests.conftest import TEST_MODELS_DIR

    added = subprocess.run(
        [sys.executable, "-m", "assistant", "models", "add",
         str(TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"), "--name", "small-copy"],
        env=daemon_env, capture_output=True, text=True, check=False)
    assert added.returncode == 0, added.stderr
    env = {**daemon_env, "ASSISTANT_SKILLS__CHAT__MODEL": "small-copy",
           "ASSISTANT_SKILLS__TRANSLATE__MODEL": "no-such-model"}
    running = start_daemon(env, tmp_path / "daemon.log")
    try:
        events = turn(running, text="Hello there.", skill="chat")
        done = events[-1]
        assert done["type"] == "done" and done["model"] == "small-copy"
        assert not [e for e in events if e["type"] == "notice"]
        with running.http() as http:
            conv = http.get(f"/api/conversations/{events[0]['conversation_id']}").json()
        reply = next(m for m in conv["messages"] if m["id"] == events[0]["message_id"])
        assert reply["model"] == "small-copy"
        # A model the request names wins over the skill's; a chat model (a UI's) does not.
        asked = turn(running, text="Hello again.", skill="chat", model=CHAT_MODEL)[-1]
        assert asked["type"] == "done" and asked["model"] == CHAT_MODEL
        ui = turn(running, text="Hello once more.", skill="chat", chat_model=CHAT_MODEL)
        assert ui[-1]["type"] == "done" and ui[-1]["model"] == "small-copy"
        # A re-route to chat answers with chat's own model, not the conversation's…
        with running.http(300) as http:
            rerouted = [json.loads(line[5:]) for line in http.post(
                f"/api/messages/{ui[0]['message_id']}/reroute",
                json={"skill": "chat", "max_tokens": 6, "temperature": 0}).iter_lines()
                if line.startswith("data:")]
            assert rerouted[-1]["type"] == "done" and rerouted[-1]["model"] == "small-copy"
            # … unless the caller names one.
            named = [json.loads(line[5:]) for line in http.post(
                f"/api/messages/{rerouted[0]['message_id']}/reroute",
                json={"skill": "chat", "model": CHAT_MODEL, "max_tokens": 6,
                      "temperature": 0}).iter_lines() if line.startswith("data:")]
            assert named[-1]["type"] == "done" and named[-1]["model"] == CHAT_MODEL
        events = turn(running, text="/translate fr Good morning.", max_tokens=12)
        notices = [e["message"] for e in events if e["type"] == "notice"]
        assert any("no-such-model" in n and CHAT_MODEL in n for n in notices), notices
        assert events[-1]["type"] == "done" and events[-1]["model"] == CHAT_MODEL
        again = turn(running, text="/translate fr Good night.", max_tokens=12)  # said once
        assert not [e for e in again if e["type"] == "notice"] and again[-1]["model"] == CHAT_MODEL
    finally:
        running.stop()
