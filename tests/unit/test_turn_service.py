"""Turns, re-routes and compaction through the HTTP API of the daemon in this process.

The real app, store, plugins and router; the fake model registered as a plugin
(:func:`assistant.testing.in_process_daemon`). Fast: no model host, no socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from assistant.config import load_settings
from assistant.daemon.compaction import SUMMARY_PREFIX
from assistant.testing import FakeBackend, InProcessDaemon, in_process_daemon

pytestmark = pytest.mark.asyncio


async def test_a_turn_is_routed_streamed_and_stored_once(fake_daemon: InProcessDaemon) -> None:
    events = await fake_daemon.events("/api/turns", {"text": "hello there", "skill": "chat"})
    kinds = [e["type"] for e in events]
    assert kinds[0] == "route" and kinds[-1] == "done" and "delta" in kinds
    route, done = events[0], events[-1]
    assert route["method"] == "explicit" and route["skill"] == "chat"
    assert done["status"] == "complete" and done["message_id"] == route["message_id"]
    assert "replaces" not in route
    store = fake_daemon.services.store
    assert store is not None
    reply = store.message(route["message_id"])
    text = "".join(e["text"] for e in events if e["type"] == "delta")
    assert (reply.status, reply.content, reply.skill) == ("complete", text, "chat")
    assert reply.route is not None and reply.route["method"] == "explicit"
    assert text == "echo: hello there"


async def test_an_unknown_skill_is_refused_before_anything_is_stored(
        fake_daemon: InProcessDaemon) -> None:
    async with fake_daemon.http() as http:
        response = await http.post("/api/turns", json={"text": "hi", "skill": "nope"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "unknown_skill"
        listed = (await http.get("/api/conversations")).json()["conversations"]
    assert listed == []


async def test_a_regenerate_answers_the_same_message_beside_the_old_reply(
        fake_daemon: InProcessDaemon) -> None:
    first = await fake_daemon.events("/api/turns", {"text": "say it", "skill": "chat"})
    old = first[0]["message_id"]
    again = await fake_daemon.events("/api/turns", {"regenerate": old, "skill": "chat"})
    assert again[0]["replaces"] == old and again[-1]["replaces"] == old
    assert again[0]["user_message_id"] == first[0]["user_message_id"]
    assert again[0]["message_id"] != old and again[-1]["status"] == "complete"


async def test_a_reroute_is_a_correction_that_the_router_then_follows(
        fake_daemon: InProcessDaemon) -> None:
    text = "tell me about the harbour lights tonight"
    first = await fake_daemon.events("/api/turns", {"text": text, "skill": "chat"})
    old = first[0]["message_id"]
    events = await fake_daemon.events(f"/api/messages/{old}/reroute", {"skill": "summarize"})
    route, done = events[0], events[-1]
    assert route["method"] == "correction" and route["skill"] == "summarize"
    assert route["replaces"] == old and done["status"] == "complete"
    assert route["explanation"] == "you re-routed this turn to 'summarize'"
    again = await fake_daemon.events("/api/turns", {"text": text})
    assert again[0]["method"] == "correction" and again[0]["skill"] == "summarize"
    async with fake_daemon.http() as http:
        user = route["user_message_id"]
        refused = await http.post(f"/api/messages/{user}/reroute", json={"skill": "chat"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "not_reroutable"


class SmallContext(FakeBackend):
    """The fake model with a 512-token context: long conversations must be compacted."""

    async def context_length(self, model: str) -> int | None:
        return 512


@pytest_asyncio.fixture
async def small_daemon(fake_daemon_env: None) -> AsyncIterator[InProcessDaemon]:
    summaries = ["They asked why, many times."] * 6  # one per part summarized; then it echoes
    async with in_process_daemon(load_settings(), SmallContext(summaries)) as daemon:
        yield daemon


@pytest.fixture
def fake_daemon_env(isolated_env: dict[str, str], tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")


async def test_a_conversation_past_the_context_is_compacted_and_the_model_gets_the_summary(
        small_daemon: InProcessDaemon) -> None:
    store = small_daemon.services.store
    assert store is not None
    cid = None
    for i in range(8):
        turn = store.begin_turn(cid, f"question {i}: " + "why " * 40)
        cid = turn.conversation_id
        store.finalize(turn.assistant_message.id, status="complete",
                       content=f"answer {i}: " + "because " * 30)
    events = await small_daemon.events("/api/turns", {"text": "and now?", "skill": "chat",
                                                      "conversation_id": cid})
    kinds = [e["type"] for e in events]
    assert "summary" in kinds and kinds.index("summary") < kinds.index("delta"), kinds
    summary = next(e for e in events if e["type"] == "summary")
    assert summary["covers"] >= 2 and summary["tokens_after"] < summary["tokens_before"]
    assert events[-1]["status"] == "complete" and events[-1]["context"] == 512
    sent = small_daemon.backend.calls[-1]
    assert SUMMARY_PREFIX + summary["text"] in sent[0].content
    assert "question 0:" not in " ".join(m.content for m in sent)
    assert store.message(summary["message_id"]).role == "summary"
    # the next turn is given the summary again, without compacting anew
    later = await small_daemon.events("/api/turns", {"text": "and then?", "skill": "chat",
                                                     "conversation_id": cid})
    assert "summary" not in [e["type"] for e in later]
    assert SUMMARY_PREFIX in small_daemon.backend.calls[-1][0].content


async def test_the_openai_route_model_runs_a_stored_turn(fake_daemon: InProcessDaemon) -> None:
    async with fake_daemon.http() as http:
        response = await http.post("/v1/chat/completions", json={
            "model": "assistant", "messages": [{"role": "user", "content": "hi you"}]})
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"].startswith("echo:")
        listed = (await http.get("/api/conversations")).json()["conversations"]
    assert len(listed) == 1 and listed[0]["message_count"] == 2
