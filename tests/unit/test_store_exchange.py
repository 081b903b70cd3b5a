"""Export and import: our lossless JSON, Markdown, ChatGPT's conversations.json, bad files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.store import MalformedImport, Store
from tests.databases import Database


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = Store.open(load_settings())
    yield s
    s.close()


def _fresh_store(database: Database, name: str) -> Store:
    """Another, empty store of the same kind as the test's."""
    return Store.open(database.fresh(name))


def _populate(store: Store) -> list[str]:
    t1 = store.begin_turn(None, "Traduis « bonjour » en anglais", model="qwen2.5-coder-0.5b",
                          settings={"temperature": 0.2})
    store.finalize(t1.assistant_message.id, status="complete", content="hello", skill="translate",
                   route={"skill": "translate", "method": "semantic", "score": 0.81,
                          "runner_up": {"skill": "chat", "score": 0.4}},
                   prompt_tokens=20, completion_tokens=2,
                   timings={"first_token_ms": 31.5, "total_ms": 90.25})
    regen = store.regenerate(t1.assistant_message.id)
    store.finalize(regen.assistant_message.id, status="cancelled", content="hel")
    t2 = store.begin_turn(t1.conversation_id, "and goodbye?")
    store.finalize(t2.assistant_message.id, status="error", content="",
                   timings={"error": "model host crashed"})
    edit = store.edit_message(t2.user_message.id, "and good night?")
    store.save_partial(edit.assistant_message.id, "good ni")  # left streaming
    other = store.begin_turn(None, "second conversation 🦆")
    store.finalize(other.assistant_message.id, status="incomplete", content="partial 🦆")
    store.rename(other.conversation_id, "Ducks")
    store.pin(other.conversation_id)
    store.archive(t1.conversation_id)
    return [t1.conversation_id, other.conversation_id]


def test_json_export_import_is_lossless(store: Store, database: Database) -> None:
    ids = _populate(store)
    exported = store.export()
    doc = json.loads(exported)
    assert doc["format"] == "assistant-conversations" and doc["version"] == 1
    copy = _fresh_store(database, "copy")
    result = copy.import_data(exported)
    assert sorted(result.imported) == sorted(ids) and result.skipped == ()
    # Every field of every conversation and message, tree and active leaf included.
    assert copy.conversations() == store.conversations()
    # And the copy exports the same document (apart from when it was exported).
    again = json.loads(copy.export())
    assert again["conversations"] == doc["conversations"]
    # Importing into the original skips what is there; nothing is duplicated.
    assert store.import_data(exported).skipped == tuple(ids)
    copy.close()


def test_export_one_conversation_and_markdown(store: Store) -> None:
    ids = _populate(store)
    one = json.loads(store.export([ids[1]]))
    assert [c["id"] for c in one["conversations"]] == [ids[1]]
    md = store.export([ids[0]], format="md")
    assert md.startswith("# Traduis")
    assert "## User" in md and "and good night?" in md and "and goodbye?" not in md
    assert "other branches" in md
    assert "## Assistant (streaming)" in md


def _chatgpt_sample() -> list[dict[str, object]]:
    def node(nid: str, parent: str | None, children: list[str], role: str | None,
             text: str = "", t: float = 1_700_000_000.0) -> dict[str, object]:
        message = None if role is None else {
            "id": nid, "author": {"role": role, "name": None, "metadata": {}},
            "create_time": t, "content": {"content_type": "text", "parts": [text]},
            "status": "finished_successfully", "metadata": {"model_slug": "gpt-4o"},
        }
        return {"id": nid, "message": message, "parent": parent, "children": children}

    return [{
        "title": "Sourdough help",
        "create_time": 1_700_000_000.0,
        "update_time": 1_700_000_600.5,
        "conversation_id": "c0ffee00-0000-4000-8000-000000000001",
        "current_node": "a2",
        "mapping": {
            "root": node("root", None, ["sys"], None),
            "sys": node("sys", "root", ["u1"], "system", ""),
            "u1": node("u1", "sys", ["a1", "a2"], "user", "My starter smells odd", 1.7e9 + 1),
            "a1": node("a1", "u1", [], "assistant", "Feed it more often", 1.7e9 + 2),
            "a2": node("a2", "u1", ["t1"], "assistant", "Discard and feed twice", 1.7e9 + 3),
            "t1": node("t1", "a2", [], "tool", "internal"),
        },
    }]


def test_chatgpt_import_keeps_the_tree(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(_chatgpt_sample()))
    result = store.import_data(path.read_bytes())
    assert result.imported == ("c0ffee00-0000-4000-8000-000000000001",)
    conv = store.get_conversation(result.imported[0])
    assert conv.title == "Sourdough help"
    assert [m.role for m in conv.messages] == ["user", "assistant", "assistant"]
    user = conv.messages[0]
    assert user.parent_id is None  # the system/root nodes are skipped, children re-attached
    assert [m.content for m in conv.children(user.id)] == ["Feed it more often",
                                                           "Discard and feed twice"]
    assert [m.content for m in conv.active_path] == ["My starter smells odd",
                                                     "Discard and feed twice"]
    assert conv.messages[1].model == "gpt-4o" and conv.messages[1].status == "complete"
    assert conv.created.timestamp() == 1_700_000_000.0
    assert store.search("starter")[0].conversation_id == conv.id
    assert store.import_data(path.read_bytes()).skipped == (conv.id,)  # idempotent


def _message_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT COUNT(*) FROM messages").scalar_one())


def test_malformed_json_names_the_line_and_stores_nothing(store: Store) -> None:
    ids = _populate(store)
    before = _message_count(store)
    text = store.export([ids[0]]).replace('"role": "user"', '"role": user', 1)
    with pytest.raises(MalformedImport, match=r"line \d+, column \d+"):
        store.import_data(text)
    assert _message_count(store) == before


def test_bad_field_names_its_path_and_nothing_is_half_imported(
    store: Store, database: Database
) -> None:
    _populate(store)
    doc = json.loads(store.export())
    doc["conversations"][1]["messages"][1]["status"] = "finished"
    target = _fresh_store(database, "target")
    with pytest.raises(MalformedImport, match=r"conversations\[1\]\.messages\[1\]\.status"):
        target.import_data(json.dumps(doc))
    assert target.list_conversations(archived=None) == []  # conversation 0 was valid: not kept
    for field, value, where in [
        ("parent_id", "ghost", r"messages\[1\]\.parent_id"),
        ("created", "yesterday", r"messages\[1\]\.created"),
        ("prompt_tokens", -1, r"messages\[1\]\.prompt_tokens"),
        ("content", None, r"messages\[1\]\.content"),
    ]:
        bad = json.loads(store.export())
        bad["conversations"][0]["messages"][1][field] = value
        with pytest.raises(MalformedImport, match=where):
            target.import_data(json.dumps(bad))
    assert _message_count(target) == 0
    with pytest.raises(MalformedImport, match="not an assistant JSON export"):
        target.import_data('{"hello": 1}')
    with pytest.raises(MalformedImport, match=r"\[0\]\.mapping"):
        target.import_data(json.dumps([{"mapping": 5, "id": "x"}]), format="chatgpt")
    target.close()


def test_a_database_error_mid_import_rolls_everything_back(
    store: Store, database: Database
) -> None:
    ids = _populate(store)
    exported = json.loads(store.export())
    target = _fresh_store(database, "clash")
    # The second conversation reuses a message id that the target already holds.
    target.import_data(json.dumps({**exported, "conversations": exported["conversations"][:1]}))
    clash = json.loads(json.dumps(exported))
    clash["conversations"][0]["id"] = "renamed"
    clash["conversations"] = [exported["conversations"][1], clash["conversations"][0]]
    with pytest.raises(MalformedImport, match="already stored"):
        target.import_data(json.dumps(clash))
    assert [c.id for c in target.list_conversations(archived=None)] == [ids[0]]
    target.close()
