"""Compaction summaries in the store: placed in the path, given to the model instead of the
turns before them, undone and redone, exported and imported, and the v1 → v2 migration."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from assistant.config import load_settings
from assistant.errors import RequestError
from assistant.store import Store, db, migrations
from assistant.store.records import model_context
from assistant.store.schema import format_time
from tests.databases import Database


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = Store.open(load_settings())
    yield s
    s.close()


def _talk(store: Store, turns: int) -> str:
    cid = None
    for i in range(turns):
        turn = store.begin_turn(cid, f"question {i} about lighthouses")
        cid = turn.conversation_id
        store.finalize(turn.assistant_message.id, status="complete", content=f"answer {i}")
    assert cid is not None
    return cid


def _talk_old(store: Store, turns: int) -> str:
    """:func:`_talk` on a database of an older schema: this code's ``finalize`` writes columns
    a later migration added, and its turns in a conversation read one (its owner), so the
    replies are finalized, and the turns after the first stored, as that version's code did."""
    first = store.begin_turn(None, "question 0 about lighthouses")
    cid, leaf = first.conversation_id, first.assistant_message.id
    insert = text("INSERT INTO messages (id, conversation_id, parent_id, role, content, status, "
                  "created) VALUES (:id, :cid, :parent, :role, :content, 'complete', :at)")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE messages SET status = 'complete', content = 'answer 0' "
                          "WHERE id = :id"), {"id": leaf})
        for i in range(1, turns):
            asked, answered = uuid.uuid4().hex, uuid.uuid4().hex
            for mid, parent, role, content in (
                    (asked, leaf, "user", f"question {i} about lighthouses"),
                    (answered, asked, "assistant", f"answer {i}")):
                conn.execute(insert, {"id": mid, "cid": cid, "parent": parent, "role": role,
                                      "content": content, "at": format_time(datetime.now(UTC))})
            leaf = answered
        conn.execute(text("UPDATE conversations SET active_leaf_id = :leaf WHERE id = :cid"),
                     {"leaf": leaf, "cid": cid})
    return cid


def test_a_summary_stands_for_the_turns_before_it_until_undone(store: Store) -> None:
    cid = _talk(store, 3)
    path = store.get_conversation(cid).active_path
    third_question = path[4]
    summary = store.add_summary(third_question.id, "They talked about lighthouses.",
                                model="m", completion_tokens=7)
    path = store.get_conversation(cid).active_path
    assert [m.role for m in path] == ["user", "assistant", "user", "assistant", "summary",
                                      "user", "assistant"]
    assert [m.content for m in model_context(path)] == [
        "They talked about lighthouses.", "question 2 about lighthouses", "answer 2"]

    undone = store.set_summary_undone(summary.id)
    assert undone.status == "undone"
    path = store.get_conversation(cid).active_path
    assert len(model_context(path)) == 6 and all(m.role != "summary"
                                                 for m in model_context(path))
    store.set_summary_undone(summary.id, undone=False)
    assert model_context(store.get_conversation(cid).active_path)[0].role == "summary"

    # the next turn continues below the summary; a later summary replaces the earlier one
    turn = store.begin_turn(cid, "question 3")
    later = store.add_summary(turn.user_message.id, "Lighthouses, three times.")
    context = model_context(store.history(turn.user_message.id))
    assert [m.id for m in context] == [later.id, turn.user_message.id]
    assert store.search("three times")  # summaries are searchable like any message


def test_only_summaries_can_be_undone(store: Store) -> None:
    cid = _talk(store, 1)
    with pytest.raises(RequestError) as info:
        store.set_summary_undone(store.get_conversation(cid).active_path[0].id)
    assert info.value.code == "not_a_summary"
    with pytest.raises(RequestError):
        store.add_summary("no-such-message", "x")


def test_summaries_survive_export_and_import(store: Store, tmp_path: Path) -> None:
    cid = _talk(store, 2)
    path = store.get_conversation(cid).active_path
    summary = store.add_summary(path[2].id, "Two questions.")
    store.set_summary_undone(summary.id)
    exported = store.export([cid])
    store.delete(cid)
    store.import_data(exported)
    path = store.get_conversation(cid).active_path
    assert [(m.role, m.status) for m in path][2] == ("summary", "undone")
    assert json.loads(store.export([cid]))["conversations"] == json.loads(exported)[
        "conversations"]


def test_a_version_1_database_is_migrated_with_its_messages_and_index(
    monkeypatch: pytest.MonkeyPatch, database: Database,
) -> None:
    every = migrations.MIGRATIONS
    monkeypatch.setattr(migrations, "MIGRATIONS", every[:1])
    monkeypatch.setattr(migrations, "LATEST", 1)
    old = Store.open(load_settings())
    cid = _talk_old(old, 2)
    old.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", every)
    monkeypatch.setattr(migrations, "LATEST", every[-1].version)

    store = Store.open(load_settings())
    try:
        assert [h.message_id for h in store.search("lighthouses")]
        path = store.get_conversation(cid).active_path
        assert [m.content for m in path] == ["question 0 about lighthouses", "answer 0",
                                             "question 1 about lighthouses", "answer 1"]
        store.add_summary(path[2].id, "One question so far.")
        store.delete(cid)
        assert not store.search("lighthouses")  # the index followed the cascade
    finally:
        store.close()
    if database.dialect != "sqlite":
        return
    file = Path(os.environ["ASSISTANT_DATA_DIR"]) / db.DB_FILENAME
    with sqlite3.connect(file) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES('integrity-check', 1)")
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        assert version == migrations.LATEST


def test_a_summary_keeps_earlier_edit_branches_reachable(store: Store) -> None:
    cid = _talk(store, 3)
    path = store.get_conversation(cid).active_path
    edited = store.edit_message(path[2].id, "question 1, asked differently")
    store.finalize(edited.assistant_message.id, status="complete", content="other answer")
    store.switch_branch(path[2].id)
    summary = store.add_summary(path[2].id, "The first question.")
    conversation = store.get_conversation(cid)
    assert {m.content for m in conversation.children(summary.id)} == {
        "question 1 about lighthouses", "question 1, asked differently"}
    assert model_context(conversation.path_to(edited.assistant_message.id))[0].id == summary.id
