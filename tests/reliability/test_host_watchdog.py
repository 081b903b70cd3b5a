"""A model host that hangs (SIGSTOP, as a stuck driver would leave it) is found by the watchdog
within ``models.host_deadline``, killed and replaced (issue 18): the turns it held fail with a
503 and Retry-After on ``/api/turns`` and ``/v1`` alike, each user message keeps its failed
reply, and the next turn is answered by a fresh host. Without the watchdog those requests
waited forever (the client's timeout ended them).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from assistant.testing import RunningDaemon, start_daemon

DEADLINE = 2.0


def events_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def host_of(daemon: RunningDaemon) -> int:
    children = daemon.children()
    assert len(children) == 1, children
    return children[0]


def turn(daemon: RunningDaemon, text: str, **fields: Any) -> list[dict[str, Any]]:
    with daemon.http(timeout=60) as http:
        reply = http.post("/api/turns", json={"text": text, "skill": "chat", "max_tokens": 8,
                                              "temperature": 0, **fields})
    assert reply.status_code == 200, reply.text
    return events_of(reply.text)


def test_a_stopped_model_host_is_killed_and_replaced(real_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    real_env["ASSISTANT_MODELS__HOST_DEADLINE"] = str(DEADLINE)
    daemon = start_daemon(real_env, tmp_path / "daemon.log")
    try:
        first = turn(daemon, "Say hi")
        assert first[-1]["type"] == "done" and first[-1]["status"] == "complete"
        conversation = first[-1]["conversation_id"]

        # Stopped mid-reply: the generation waits on a host that will never answer.
        stopped = host_of(daemon)
        failed: list[dict[str, Any]] = []
        started = 0.0
        with daemon.http(timeout=60) as http, http.stream("POST", "/api/turns", json={
                "text": "Count from one to fifty in words", "skill": "chat",
                "max_tokens": 300, "temperature": 0, "conversation_id": conversation},
                ) as reply:
            for line in reply.iter_lines():
                if line.startswith("data:"):
                    failed.append(json.loads(line[5:]))
                    if failed[-1]["type"] == "delta" and not started:
                        os.kill(stopped, signal.SIGSTOP)
                        started = time.monotonic()
        took = time.monotonic() - started
        assert started, failed
        error = failed[-1]
        assert error["type"] == "error", failed
        assert error["status"] == 503 and error["code"] == "model_unavailable"
        assert error["retry_after"] >= 1
        assert "did not answer for 2 s" in error["message"], error
        # A beat every deadline/3, the deadline, a grace of deadline/4: about 3 s.
        assert took < DEADLINE * 2.5, took
        assert stopped not in daemon.children()  # killed, and reaped

        again = turn(daemon, "Say hi once more", conversation_id=conversation)
        assert again[-1]["type"] == "done" and again[-1]["status"] == "complete", again
        assert host_of(daemon) != stopped

        # /v1 alike: a 503 with Retry-After, then an answer.
        os.kill(host_of(daemon), signal.SIGSTOP)
        with daemon.http(timeout=60) as http:
            body = {"model": "assistant", "max_tokens": 8, "temperature": 0,
                    "messages": [{"role": "user", "content": "/chat hello"}]}
            refused = http.post("/v1/chat/completions", json=body)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            answered = http.post("/v1/chat/completions", json=body)
            assert answered.status_code == 200, answered.text
            tree = http.get(f"/api/conversations/{conversation}").json()["messages"]
            status = http.get("/api/status").json()

        # Every user message kept its reply: the failed one stored as an error.
        replies = {m["parent_id"]: m for m in tree if m["role"] == "assistant"}
        users = [m for m in tree if m["role"] == "user"]
        assert len(users) == 3 and all(u["id"] in replies for u in users)
        assert [replies[u["id"]]["status"] for u in users] == ["complete", "error", "complete"]
        assert status["status"] in ("ready", "degraded") and not any(
            "chat" in p for p in status["problems"]), status
    finally:
        for pid in daemon.children():  # never leave a stopped host behind
            os.kill(pid, signal.SIGCONT)
        daemon.stop()
