"""A stored conversation grown past the context keeps working: older turns are folded into a
visible, stored summary, which can be undone. Real daemon, real smollm2-135m, 512-token context.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import RunningDaemon, start_daemon

pytestmark = pytest.mark.integration
N_CTX = 512
FILLER = ("The lighthouse keeper wrote in his log that the storm had passed, the lamp was "
          "trimmed, and the supply boat was expected on Tuesday with oil and letters. ")


def turn(daemon: RunningDaemon, **body: Any) -> list[dict[str, Any]]:
    events = []
    with daemon.http(900) as http, http.stream(
        "POST", "/api/turns",
        json={"skill": "chat", "max_tokens": 24, "temperature": 0, **body},
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


@pytest.mark.timeout(1500)  # ~1 minute on a quiet machine; ten times that on a loaded one
def test_a_long_conversation_is_compacted_visibly_and_the_summary_can_be_undone(
    daemon_env: dict[str, str], tmp_path: Any,
) -> None:
    env = {**daemon_env, "ASSISTANT_MODELS__CONTEXT_LENGTH": str(N_CTX),
           "ASSISTANT_PLUGINS__SKILL_TIMEOUT": "600"}  # a loaded machine is slow, not broken
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        conversation = None
        summaries: list[dict[str, Any]] = []
        for i in range(8):
            events = turn(daemon, text=f"Day {i}. {FILLER * 2}What happened?",
                          conversation_id=conversation)
            conversation = events[0]["conversation_id"]
            assert events[-1]["type"] == "done", events[-1]
            assert events[-1]["status"] == "complete"
            assert events[-1]["usage"]["prompt_tokens"] < N_CTX
            kinds = [e["type"] for e in events]
            if "summary" in kinds:
                # shown before the reply starts, after progress while it was written
                assert kinds.index("summary") < kinds.index("delta")
                assert "progress" in kinds[: kinds.index("summary")]
                summaries.append(next(e for e in events if e["type"] == "summary"))
                break
        assert summaries, "eight long turns never needed a summary"
        first = summaries[0]
        assert first["text"] and first["covers"] >= 2
        assert first["tokens_after"] < first["tokens_before"]
        # the conversation goes on below its summary
        events = turn(daemon, text="Who wrote the log?", conversation_id=conversation)
        assert events[-1]["type"] == "done" and events[-1]["status"] == "complete"
        assert "summary" not in [e["type"] for e in events]

        with daemon.http() as http:
            stored = http.get(f"/api/conversations/{conversation}").json()
            roles = {m["id"]: (m["role"], m["status"], m["content"])
                     for m in stored["messages"]}
            assert roles[first["message_id"]] == ("summary", "complete", first["text"])
            assert sum(m["content"].startswith("Day ") for m in stored["messages"]) >= 3

            undone = http.post(f"/api/messages/{summaries[-1]['message_id']}/undo")
            assert undone.status_code == 200 and undone.json()["status"] == "undone"
            not_a_summary = http.post(f"/api/messages/{stored['messages'][0]['id']}/undo")
            assert not_a_summary.status_code == 400
            assert not_a_summary.json()["error"]["code"] == "not_a_summary"

        # with the summary undone the conversation is over budget again: the next turn
        # compacts anew, visibly, and still completes
        events = turn(daemon, text="And the next day?", conversation_id=conversation)
        assert events[-1]["type"] == "done" and events[-1]["status"] == "complete"
        again = [e for e in events if e["type"] == "summary"]
        assert again and again[0]["message_id"] != summaries[-1]["message_id"]
    finally:
        daemon.stop()
