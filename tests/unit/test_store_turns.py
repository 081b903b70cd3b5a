"""The turn lifecycle, crash recovery, branching, listing and editing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from assistant.config import load_settings
from assistant.errors import RequestError, StorageError
from assistant.store import Store
from assistant.store.turns import make_title
from tests.databases import Database


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = Store.open(load_settings())
    yield s
    s.close()


def test_begin_turn_commits_user_message_and_a_streaming_reply(store: Store) -> None:
    turn = store.begin_turn(None, "What is WAL mode in SQLite?", model="smollm2-135m")
    assert turn.created_conversation
    # Visible from a second, independent store: it is committed, not merely pending.
    other = Store.open(load_settings())
    conv = other.get_conversation(turn.conversation_id)
    other.close()
    user, reply = conv.messages
    assert (user.role, user.status, user.content) == ("user", "complete",
                                                      "What is WAL mode in SQLite?")
    assert (reply.role, reply.status, reply.parent_id) == ("assistant", "streaming", user.id)
    assert reply.model == "smollm2-135m"
    assert conv.active_leaf_id == reply.id
    assert conv.title == "What is WAL mode in SQLite?"
    assert user.created < reply.created


def test_title_is_short_and_from_the_first_line() -> None:
    assert make_title("  hello\n  world ") == "hello"
    long = make_title("word " * 40)
    assert len(long) <= 60 and long.endswith("…")
    assert make_title("   ") == "New conversation"


def test_title_hint_wins_and_later_turns_keep_the_title(store: Store) -> None:
    turn = store.begin_turn(None, "first", title_hint="My title")
    store.begin_turn(turn.conversation_id, "second")
    assert store.get_conversation(turn.conversation_id).title == "My title"


def test_partial_then_finalize_once(store: Store) -> None:
    turn = store.begin_turn(None, "count to three")
    reply_id = turn.assistant_message.id
    store.save_partial(reply_id, "one")
    store.save_partial(reply_id, "one two")
    assert store.message(reply_id).content == "one two"
    final = store.finalize(
        reply_id, status="complete", content="one two three", skill="chat",
        route={"skill": "chat", "method": "fallback", "score": 0.2},
        model="smollm2-135m", prompt_tokens=12, completion_tokens=3,
        timings={"first_token_ms": 40.5, "total_ms": 120.0},
    )
    assert final == store.message(reply_id)
    assert (final.status, final.content, final.skill) == ("complete", "one two three", "chat")
    assert final.route == {"skill": "chat", "method": "fallback", "score": 0.2}
    assert (final.prompt_tokens, final.completion_tokens) == (12, 3)
    assert final.timings == {"first_token_ms": 40.5, "total_ms": 120.0}
    with pytest.raises(StorageError, match="already finalized"):
        store.finalize(reply_id, status="error", content="")
    with pytest.raises(StorageError, match="already finalized"):
        store.save_partial(reply_id, "late token")
    with pytest.raises(ValueError):
        store.finalize(store.begin_turn(None, "x").assistant_message.id, status="streaming",
                       content="")


def test_unknown_ids_are_not_found(store: Store) -> None:
    with pytest.raises(RequestError) as caught:
        store.begin_turn("nope", "hello")
    assert caught.value.status == 404
    with pytest.raises(RequestError):
        store.save_partial("nope", "x")
    with pytest.raises(RequestError):
        store.get_conversation("nope")
    other = store.begin_turn(None, "elsewhere")
    turn = store.begin_turn(None, "here")
    with pytest.raises(RequestError):  # a parent from another conversation
        store.begin_turn(turn.conversation_id, "x", parent_id=other.user_message.id)


def test_recover_marks_streaming_incomplete_and_keeps_text(store: Store) -> None:
    crashed = store.begin_turn(None, "a long answer please")
    store.save_partial(crashed.assistant_message.id, "It was a dark and")
    done = store.begin_turn(None, "short")
    store.finalize(done.assistant_message.id, status="complete", content="ok")
    store.close()
    # The daemon restarts.
    restarted = Store.open(load_settings())
    assert restarted.recover() == 1
    kept = restarted.message(crashed.assistant_message.id)
    assert (kept.status, kept.content) == ("incomplete", "It was a dark and")
    assert restarted.message(done.assistant_message.id).status == "complete"
    assert restarted.recover() == 0
    restarted.close()


def _contents(store: Store, conversation_id: str) -> list[str]:
    return [m.content for m in store.get_conversation(conversation_id).active_path]


def _answer(store: Store, message_id: str, text: str) -> None:
    store.finalize(message_id, status="complete", content=text)


def test_edit_branches_and_the_active_path_follows(store: Store) -> None:
    t1 = store.begin_turn(None, "q1")
    _answer(store, t1.assistant_message.id, "a1")
    t2 = store.begin_turn(t1.conversation_id, "q2")
    _answer(store, t2.assistant_message.id, "a2")
    conv_id = t1.conversation_id
    assert _contents(store, conv_id) == ["q1", "a1", "q2", "a2"]

    edited = store.edit_message(t2.user_message.id, "q2 edited")
    assert edited.user_message.parent_id == t2.user_message.parent_id
    _answer(store, edited.assistant_message.id, "a2'")
    assert _contents(store, conv_id) == ["q1", "a1", "q2 edited", "a2'"]
    conv = store.get_conversation(conv_id)
    assert [m.content for m in conv.children(t1.assistant_message.id)] == ["q2", "q2 edited"]
    assert len(conv.messages) == 6  # nothing overwritten

    # Editing the very first message branches at the root.
    root_edit = store.edit_message(t1.user_message.id, "q1 edited")
    assert root_edit.user_message.parent_id is None
    assert _contents(store, conv_id) == ["q1 edited", ""]

    # Switching back to the first branch lands on its newest leaf.
    store.switch_branch(t2.user_message.id)
    assert _contents(store, conv_id) == ["q1", "a1", "q2", "a2"]
    store.switch_branch(t1.user_message.id)
    assert _contents(store, conv_id) == ["q1", "a1", "q2 edited", "a2'"]

    # A new turn continues from the active leaf.
    t3 = store.begin_turn(conv_id, "q3")
    assert t3.user_message.parent_id == edited.assistant_message.id
    assert store.history(t3.user_message.id)[-2].content == "a2'"


def test_regenerate_adds_a_sibling_reply(store: Store) -> None:
    t1 = store.begin_turn(None, "tell a joke")
    _answer(store, t1.assistant_message.id, "joke one")
    again = store.regenerate(t1.assistant_message.id)
    assert again.user_message.id == t1.user_message.id
    assert again.assistant_message.parent_id == t1.user_message.id
    assert again.assistant_message.status == "streaming"
    _answer(store, again.assistant_message.id, "joke two")
    conv = store.get_conversation(t1.conversation_id)
    assert [m.content for m in conv.children(t1.user_message.id)] == ["joke one", "joke two"]
    assert _contents(store, t1.conversation_id) == ["tell a joke", "joke two"]
    with pytest.raises(RequestError):
        store.regenerate(t1.user_message.id)
    with pytest.raises(RequestError):
        store.edit_message(t1.assistant_message.id, "no")


def test_list_filters_and_order(store: Store) -> None:
    a = store.begin_turn(None, "alpha")
    store.finalize(a.assistant_message.id, status="complete", content="x", skill="translate")
    b = store.begin_turn(None, "beta")
    c = store.begin_turn(None, "gamma")
    store.pin(a.conversation_id)
    store.archive(b.conversation_id)
    ids = [s.id for s in store.list_conversations()]
    assert ids == [a.conversation_id, c.conversation_id]  # pinned first, archived hidden
    assert [s.id for s in store.list_conversations(archived=True)] == [b.conversation_id]
    assert len(store.list_conversations(archived=None)) == 3
    assert [s.id for s in store.list_conversations(pinned=True)] == [a.conversation_id]
    assert [s.id for s in store.list_conversations(skill="translate")] == [a.conversation_id]
    assert store.list_conversations()[0].message_count == 2
    future = datetime.now(UTC) + timedelta(days=1)
    assert store.list_conversations(since=future) == []
    assert store.list_conversations(until=datetime(2000, 1, 1, tzinfo=UTC)) == []
    assert len(store.list_conversations(since=datetime.now(UTC) - timedelta(hours=1))) == 2
    store.archive(b.conversation_id, archived=False)
    store.pin(a.conversation_id, pinned=False)
    assert len(store.list_conversations()) == 3


def test_rename_and_delete(store: Store) -> None:
    t = store.begin_turn(None, "to be deleted")
    store.rename(t.conversation_id, "  New   name ")
    assert store.get_conversation(t.conversation_id).title == "New name"
    with pytest.raises(RequestError):
        store.rename(t.conversation_id, "   ")
    store.edit_message(t.user_message.id, "branch")
    store.delete(t.conversation_id)
    with pytest.raises(RequestError):
        store.get_conversation(t.conversation_id)
    with pytest.raises(RequestError):
        store.message(t.user_message.id)
    with pytest.raises(RequestError):
        store.delete(t.conversation_id)
    assert store.search("deleted") == []  # the index followed the cascade
