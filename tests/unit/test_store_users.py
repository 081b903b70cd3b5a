"""Users in the store: tokens kept hashed, revoke, and each owner's data seen by that owner
alone (conversations, messages, search, export, documents and their search). On SQLite and
PostgreSQL (tests/databases.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from assistant.documents.search import HybridSearch
from assistant.errors import InputError, MalformedImport, RequestError
from assistant.store import Store
from assistant.store.documents import NewChunk
from assistant.store.users import TOKEN_PREFIX, token_hash
from assistant.testing import hashed_vector
from tests.databases import Database


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = Store.open(database.fresh("db"))
    yield s
    s.close()


async def fake_embed(texts: list[str]) -> list[list[float]]:
    return [hashed_vector(t) for t in texts]


def test_a_token_is_shown_once_and_stored_as_its_hash(store: Store) -> None:
    alice, token = store.users.add("alice")
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    with store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM users"))]
    assert token not in repr(rows) and token_hash(token) in repr(rows)
    assert store.users.authenticate(token) == alice
    assert store.users.authenticate(token + "x") is None
    assert store.users.authenticate("not-a-user-token") is None


def test_names_are_checked_and_unique_among_users_not_revoked(store: Store) -> None:
    first, _ = store.users.add("bob")
    with pytest.raises(InputError, match="already a user named 'bob'"):
        store.users.add("bob")
    for bad in ("", "-x", "a b", "x" * 65, "ä/b"):
        with pytest.raises(InputError, match="not a user name"):
            store.users.add(bad)
    with pytest.raises(InputError, match="No user named 'carol'"):
        store.users.revoke("carol")
    store.users.revoke("bob")
    with pytest.raises(InputError, match="No user named 'bob'"):
        store.users.revoke("bob")
    again, _ = store.users.add("bob")  # a new user: nothing of the revoked one's
    assert again.id != first.id
    assert [(u.name, u.revoked is None) for u in store.users.all()] == [
        ("bob", False), ("bob", True)]


def test_a_revoked_token_is_refused(store: Store) -> None:
    _, token = store.users.add("dave")
    store.users.revoke("dave")
    assert store.users.authenticate(token) is None


def test_each_owner_sees_only_their_conversations(store: Store) -> None:
    a_id = store.users.add("a")[0].id
    b_id = store.users.add("b")[0].id
    a, b, owner = store.owned_by(a_id), store.owned_by(b_id), store
    mine = a.begin_turn(None, "the secret pelican plan")
    theirs = b.begin_turn(None, "the public pelican note")
    own = owner.begin_turn(None, "the owner's pelican list")
    assert [c.id for c in a.list_conversations()] == [mine.conversation_id]
    assert [c.id for c in owner.list_conversations()] == [own.conversation_id]
    assert [h.conversation_id for h in b.search("pelican")] == [theirs.conversation_id]
    assert [h.conversation_id for h in owner.search("pelican")] == [own.conversation_id]
    assert b.search("secret") == []
    assert mine.conversation_id not in b.export()
    assert "secret" not in b.export()
    cid, mid = mine.conversation_id, mine.user_message.id
    for attempt in (
        lambda: b.get_conversation(cid), lambda: b.message(mid), lambda: b.history(mid),
        lambda: b.rename(cid, "mine now"), lambda: b.archive(cid), lambda: b.pin(cid),
        lambda: b.delete(cid), lambda: b.export([cid]),
        lambda: b.begin_turn(cid, "and more"), lambda: b.edit_message(mid, "edited"),
        lambda: b.regenerate(mine.assistant_message.id), lambda: b.switch_branch(mid),
        lambda: owner.get_conversation(cid),
    ):
        with pytest.raises(RequestError) as caught:
            attempt()
        assert caught.value.status == 404
    assert a.get_conversation(cid).title == mine_title(a, cid)
    assert len(a.get_conversation(cid).messages) == 2  # untouched


def mine_title(store: Store, cid: str) -> str:
    return store.get_conversation(cid).title


def test_an_import_belongs_to_its_importer(store: Store) -> None:
    a = store.owned_by(store.users.add("a")[0].id)
    turn = store.begin_turn(None, "exported by the owner")
    data = store.export()
    store.delete(turn.conversation_id)
    assert a.import_data(data).imported == (turn.conversation_id,)
    assert [c.id for c in a.list_conversations()] == [turn.conversation_id]
    assert store.list_conversations() == []
    # Another's message ids in a file: refused without naming the conversation holding them.
    clash = data.replace(turn.conversation_id, "f" * 32)
    with pytest.raises(MalformedImport) as refused:
        store.import_data(clash)
    assert turn.conversation_id not in str(refused.value)
    assert "not yours" in str(refused.value)


def _add(store: Store, path: str, words: str) -> str:
    chunks = [NewChunk(0, "line 1", words, None)]
    return store.documents.add(path, path, "same-content", chunks, 1).id


def test_each_owner_sees_only_their_documents(store: Store) -> None:
    a = store.owned_by(store.users.add("a")[0].id)
    b = store.owned_by(store.users.add("b")[0].id)
    # The same file, held by two owners: one document each.
    a_doc = _add(a, "/home/a/notes.md", "the walrus password is hunter2")
    b_doc = _add(b, "/home/a/notes.md", "the walrus eats fish")
    assert [d.id for d in a.documents.all()] == [a_doc]
    assert [d.id for d in b.documents.all()] == [b_doc]
    assert store.documents.all() == []
    assert b.documents.by_path("/home/a/notes.md").id == b_doc  # type: ignore[union-attr]
    seqs = [seq for seq, _ in b.documents.keyword_search("walrus password")]
    assert [c.document_id for c in b.documents.chunks(seqs)] == [b_doc]
    a_seqs = [seq for seq, _ in a.documents.keyword_search("walrus")]
    assert b.documents.chunks(a_seqs) == []
    assert b.documents.remove(a_doc) == []
    assert [d.id for d in a.documents.all()] == [a_doc]


@pytest.mark.asyncio
async def test_hybrid_search_of_one_owner_never_finds_anothers_chunks(store: Store) -> None:
    a = store.owned_by(store.users.add("a")[0].id)
    b = store.owned_by(store.users.add("b")[0].id)
    text_a = "The launch code of the walrus project is 7731."
    a.documents.add("/a.md", "a", "sha-a", [NewChunk(0, "line 1", text_a,
                                                      _blob(hashed_vector(text_a)))], 1)
    found = await HybridSearch(b, fake_embed, split=lambda t, _: [t]).search(
        "walrus project launch code")
    assert found == []
    mine = await HybridSearch(a, fake_embed, split=lambda t, _: [t]).search(
        "walrus project launch code")
    assert [h["text"] for h in mine] == [text_a]


def _blob(vector: list[float]) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float32).tobytes()
