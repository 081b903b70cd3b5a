"""A re-route is a regenerate through the turn service: same history, same recorder.

In-process daemon (the real app, store and plugins), the fake model registered as a plugin.
"""

from __future__ import annotations

import pytest

from assistant.daemon.compaction import SUMMARY_PREFIX
from assistant.testing import InProcessDaemon

pytestmark = pytest.mark.asyncio


async def test_reroute_in_a_compacted_conversation_sends_the_summary_not_the_folded_turns(
        fake_daemon: InProcessDaemon) -> None:
    store = fake_daemon.services.store
    assert store is not None
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

    got = await fake_daemon.events(f"/api/messages/{last.assistant_message.id}/reroute",
                                   {"skill": "chat"})
    assert got[0]["method"] == "correction" and got[-1]["status"] == "complete", got
    sent = fake_daemon.backend.calls[-1]
    assert SUMMARY_PREFIX + "they asked two folded questions" in sent[0].content, sent
    contents = " ".join(m.content for m in sent)
    assert "folded question 0" not in contents and "folded question 1" not in contents
    assert "folded question 2" in contents and "kept question" in contents
    new = store.message(got[0]["message_id"])
    assert new.status == "complete" and new.content == "".join(
        e["text"] for e in got if e["type"] == "delta")
    assert new.route is not None and new.route["method"] == "correction"
