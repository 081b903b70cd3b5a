"""The bundled guards in the real daemon on smollm2-135m (issue 18): a secret typed is redacted
before the model or the store sees it, text the model writes is redacted as it streams, a
blocked topic is refused by name and stored, over /api/turns and /v1 alike."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.integration.conftest import start_daemon

KEY = "sk-" + "Zx9" * 10


def events_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def test_guards_act_in_the_real_daemon(daemon_env: dict[str, str], tmp_path: Path) -> None:
    # Every "e" the model writes is a "secret" of the user's: the reply cannot avoid them, so
    # the filter is seen redacting a real model's stream, whatever it says.
    daemon_env["ASSISTANT_GUARDS__SECRETS__PATTERNS"] = "['[eE]']"
    daemon_env["ASSISTANT_GUARDS__TOPICS__BLOCKED"] = '["walrus"]'
    daemon = start_daemon(daemon_env, tmp_path / "daemon.log")
    try:
        with daemon.http(timeout=120) as http:
            plugins = http.get("/api/plugins").json()["plugins"]
            guard = next(p for p in plugins if p["name"] == "guard")
            assert guard["bundled"] and guard["guards"] == ["secrets", "topics"]

            reply = http.post("/api/turns", json={
                "text": f"Say hi to Kim. My API is {KEY}", "skill": "chat",
                "max_tokens": 40, "temperature": 0, "seed": 1})
            assert reply.status_code == 200, reply.text
            events = events_of(reply.text)
            rewrite = events[0]
            assert rewrite["type"] == "guard" and rewrite["action"] == "rewrite"
            assert rewrite["guard"] == "secrets" and rewrite["kinds"] == ["api_key"]
            done = events[-1]
            assert done["type"] == "done" and done["status"] == "complete", events
            text = "".join(e["text"] for e in events if e["type"] == "delta")
            assert "[redacted:pattern]" in text
            assert not re.search("[eE]", text.replace("[redacted:pattern]", ""))
            redacted = [e for e in events if e["type"] == "guard" and e["action"] == "redact"]
            assert redacted and all(e["stage"] == "output" for e in redacted)

            conversation = done["conversation_id"]
            messages = http.get(f"/api/conversations/{conversation}").json()["messages"]
            assert messages[0]["content"] == "Say hi to Kim. My API is [redacted:api_key]"
            assert messages[1]["content"] == text
            exported = http.get(f"/api/conversations/{conversation}/export").text
            assert KEY not in exported and "Zx9" not in exported

            blocked = events_of(http.post("/api/turns", json={
                "text": "Talk about walrus habitats", "conversation_id": conversation}).text)
            assert [e["type"] for e in blocked] == ["guard", "delta", "done"]
            assert blocked[0]["action"] == "block" and blocked[-1]["status"] == "blocked"
            assert blocked[1]["text"].startswith("Blocked by guard 'topics': ")
            tree = http.get(f"/api/conversations/{conversation}").json()["messages"]
            assert tree[-1]["route"]["method"] == "blocked"
            assert tree[-2]["content"] == "Talk about walrus habitats"

            v1 = http.post("/v1/chat/completions", json={
                "model": "assistant", "messages": [{"role": "user", "content": "a walrus?"}]})
            assert v1.status_code == 200
            choice = v1.json()["choices"][0]
            assert choice["finish_reason"] == "content_filter"
            assert choice["message"]["content"].startswith("Blocked by guard 'topics'")
    finally:
        daemon.stop()
