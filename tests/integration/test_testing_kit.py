"""The plugin authors' ``temp_daemon`` fixture starts a real daemon on temp dirs and stops it."""

from __future__ import annotations

import pytest

from assistant.testing import RunningDaemon, daemon_model, temp_daemon  # noqa: F401 (fixtures)
from tests.integration.conftest import CHAT_MODEL


@pytest.fixture
def daemon_model() -> str:  # noqa: F811 (overrides the kit's, as a plugin author would)
    return CHAT_MODEL


def test_temp_daemon_answers_a_turn(temp_daemon: RunningDaemon) -> None:  # noqa: F811
    assert temp_daemon.env["ASSISTANT_MODEL"] == CHAT_MODEL
    assert len(str(temp_daemon.socket)) < 100
    with temp_daemon.http() as http:
        reply = http.post("/api/turns", json={"text": "hi", "skill": "chat", "max_tokens": 2})
    assert reply.status_code == 200 and "event: done" in reply.text
