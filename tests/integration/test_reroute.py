"""Correcting a route through the daemon: the API, the CLI, and what routing learns from it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.integration.conftest import RunningDaemon


def stream(daemon: RunningDaemon, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    events = []
    with daemon.http() as http, http.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


def test_reroute_regenerates_with_the_skill_and_teaches_the_router(daemon: RunningDaemon) -> None:
    text = "tell me about the harbour lights tonight"
    first = stream(daemon, "/api/turns", {"text": text, "skill": "chat", "max_tokens": 4})
    old = first[0]["message_id"]
    events = stream(daemon, f"/api/messages/{old}/reroute",
                    {"skill": "summarize", "max_tokens": 4})
    route, done = events[0], events[-1]
    assert route["type"] == "route" and route["method"] == "correction"
    assert route["skill"] == "summarize" and route["replaces"] == old
    assert done["type"] == "done" and done["status"] == "complete", done
    new = route["message_id"]
    assert new != old and done["message_id"] == new
    with daemon.http() as http:
        conversation = http.get(f"/api/conversations/{route['conversation_id']}").json()
        replies = {m["id"]: m for m in conversation["messages"] if m["role"] == "assistant"}
        assert replies[new]["parent_id"] == replies[old]["parent_id"] == route["user_message_id"]
        assert replies[new]["skill"] == "summarize" and replies[new]["status"] == "complete"
        assert replies[new]["content"] == "".join(
            e["text"] for e in events if e["type"] == "delta")
        # The same words, with no skill asked for, now follow the correction.
        again = stream(daemon, "/api/turns", {"text": text, "max_tokens": 2})
        assert again[0]["method"] == "correction" and again[0]["skill"] == "summarize"
        # Refusals are HTTP errors, before anything is stored.
        assert http.post(f"/api/messages/{new}/reroute", json={"skill": "nope"}).status_code == 400
        user = route["user_message_id"]
        assert http.post(f"/api/messages/{user}/reroute", json={"skill": "chat"}
                         ).status_code == 400
        assert http.post("/api/messages/missing/reroute", json={"skill": "chat"}
                         ).status_code == 404


def test_reroute_command_goes_through_the_daemon(daemon: RunningDaemon) -> None:
    first = stream(daemon, "/api/turns", {"text": "a line to translate maybe",
                                          "skill": "chat", "max_tokens": 2})
    result = subprocess.run(
        [sys.executable, "-m", "assistant", "reroute", first[0]["message_id"], "chat",
         "--max-tokens", "2", "--json"],
        env=daemon.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["route"]["method"] == "correction" and out["done"]["status"] == "complete"
    bad = subprocess.run([sys.executable, "-m", "assistant", "reroute", "missing", "chat"],
                         env=daemon.env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and bad.stderr.startswith("error:"), bad.stderr
