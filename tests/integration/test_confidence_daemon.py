"""A reply's confidence on the real daemon with the real smollm2-135m: the model host's
token log-probabilities reach the ``done`` event and the stored reply."""

from __future__ import annotations

import pytest

from tests.integration.conftest import RunningDaemon
from tests.integration.test_turns_api import turn

pytestmark = pytest.mark.integration


def test_a_chat_turn_carries_its_confidence_to_done_and_the_store(
        daemon: RunningDaemon) -> None:
    events = turn(daemon, text="Name a colour.", skill="chat")
    done = events[-1]
    assert done["type"] == "done" and done["status"] == "complete"
    assert isinstance(done["confidence"], float) and 0 < done["confidence"] <= 1
    with daemon.http() as http:
        stored = http.get(f"/api/messages/{done['message_id']}").json()
    assert stored["confidence"] == done["confidence"]
