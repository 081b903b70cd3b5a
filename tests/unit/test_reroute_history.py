"""A re-route is a regenerate through the turn service: same history, same recorder.

In-process daemon (the real app, store and plugins), the fake model registered as a plugin.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from assistant.daemon.compaction import SUMMARY_PREFIX
from assistant.testing import FakeBackend, FakeModelPlugin

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def daemon(monkeypatch: pytest.MonkeyPatch, isolated_env: dict[str, str],
                 tmp_path: Any) -> AsyncIterator[Any]:
    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")
    from assistant.config import load_settings
    from assistant.daemon.api import create_app
    from assistant.daemon.server import Daemon, RuntimeFiles
    from assistant.plugins import load_plugins

    settings = load_settings()
    daemon = Daemon(settings, RuntimeFiles(settings))
    daemon.backend = FakeBackend()
    plugins = load_plugins(settings)
    plugins.register(FakeModelPlugin(daemon.backend), "fake-model")
    daemon.turns.plugins = plugins
    create_app(daemon)
    await daemon.startup()
    yield daemon
    await daemon.shutdown()


async def events(daemon: Any, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    transport = httpx.ASGITransport(app=daemon.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://assistant") as http:
        response = await http.post(path, json=body)
    assert response.status_code == 200, response.text
    return [json.loads(line[5:]) for line in response.text.splitlines()
            if line.startswith("data:")]


async def test_reroute_in_a_compacted_conversation_sends_the_summary_not_the_folded_turns(
        daemon: Any) -> None:
    store = daemon.store
    cid = None
    users = []
    for i in range(4):
        turn = store.begin_turn(cid, f"folded question {i}")
        cid = turn.conversation_id
        users.append(turn.user_message.id)
        store.finalize(turn.assistant_message.id, status="complete", content=f"answer {i}")
    store.add_summary(users[2], "they asked two folded questions", model="fake")
    last = store.begin_turn(cid, "kept question")
    store.finalize(last.assistant_message.id, status="complete", content="a summary",
                   skill="summarize")

    got = await events(daemon, f"/api/messages/{last.assistant_message.id}/reroute",
                       {"skill": "chat"})
    assert got[0]["method"] == "correction" and got[-1]["status"] == "complete", got
    sent = daemon.backend.calls[-1]
    assert SUMMARY_PREFIX + "they asked two folded questions" in sent[0].content, sent
    contents = " ".join(m.content for m in sent)
    assert "folded question 0" not in contents and "folded question 1" not in contents
    assert "folded question 2" in contents and "kept question" in contents
    new = store.message(got[0]["message_id"])
    assert new.status == "complete" and new.content == "".join(
        e["text"] for e in got if e["type"] == "delta")
    assert new.route is not None and new.route["method"] == "correction"
