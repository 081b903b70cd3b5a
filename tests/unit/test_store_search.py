"""Full-text search: ranking, snippets, skill filter, and the index kept in step by triggers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from assistant.config import load_settings
from assistant.store import Store
from assistant.store.search import fts_query


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open(load_settings())
    yield s
    s.close()


def _turn(store: Store, question: str, answer: str, skill: str) -> str:
    turn = store.begin_turn(None, question)
    store.finalize(turn.assistant_message.id, status="complete", content=answer, skill=skill)
    return turn.assistant_message.id


def test_ranked_by_bm25_with_highlighted_snippets(store: Store) -> None:
    dense = _turn(store, "q", "pelican pelican pelican facts", "chat")
    sparse = _turn(store, "q", "a long text about birds of the sea and one pelican among "
                   "gulls, terns, cormorants, albatrosses and many other birds", "chat")
    _turn(store, "q", "nothing relevant here", "chat")
    hits = store.search("pelican")
    assert [h.message_id for h in hits] == [dense, sparse]
    assert hits[0].rank < hits[1].rank
    assert "**pelican**" in hits[0].snippet
    assert "**pelican**" in store.search("Pelican")[0].snippet  # case-insensitive
    marked = store.search("pelican", highlight=("<mark>", "</mark>"))
    assert "<mark>pelican</mark>" in marked[0].snippet
    assert hits[0].conversation_title == "q"


def test_snippet_is_a_window_of_long_messages(store: Store) -> None:
    _turn(store, "q", " ".join(["filler"] * 200 + ["needle"] + ["filler"] * 200), "chat")
    snippet = store.search("needle")[0].snippet
    assert "**needle**" in snippet and snippet.count("filler") <= 12 and "…" in snippet


def test_all_words_required_prefix_and_diacritics(store: Store) -> None:
    both = _turn(store, "q", "translate the café menu", "translate")
    _turn(store, "q", "translate the letter", "translate")
    assert [h.message_id for h in store.search("translate menu")] == [both]
    assert [h.message_id for h in store.search("cafe")] == [both]  # diacritics folded
    assert [h.message_id for h in store.search("men*")] == [both]


def test_query_syntax_cannot_break_search(store: Store) -> None:
    _turn(store, "q", 'he said "hello" (twice) AND NOT left', "chat")
    for nasty in ['"', "AND", "hello)", "NEAR(", "col:hello", "-", "*", "'; DROP TABLE"]:
        store.search(nasty)  # no exception
    assert store.search("") == []
    assert fts_query('say "hi" now*') == '"say" "hi" "now"*'


def test_skill_filter_keeps_replies_and_their_questions(store: Store) -> None:
    translated = store.begin_turn(None, "translate bonjour")
    store.finalize(translated.assistant_message.id, status="complete", content="hello bonjour",
                   skill="translate")
    chatted = store.begin_turn(None, "bonjour means?")
    store.finalize(chatted.assistant_message.id, status="complete", content="it means hello",
                   skill="chat")
    ids = {h.message_id for h in store.search("bonjour", skill="translate")}
    assert ids == {translated.user_message.id, translated.assistant_message.id}
    assert {h.message_id for h in store.search("hello", skill="chat")} == {
        chatted.assistant_message.id}
    assert store.search("bonjour", skill="summarize") == []


def test_index_follows_partials_edits_and_deletes(store: Store) -> None:
    turn = store.begin_turn(None, "question")
    store.save_partial(turn.assistant_message.id, "ephemeral draft")
    assert len(store.search("ephemeral")) == 1
    store.finalize(turn.assistant_message.id, status="complete", content="final words")
    assert store.search("ephemeral") == []
    assert len(store.search("final")) == 1
    store.delete(turn.conversation_id)
    assert store.search("final") == [] and store.search("question") == []
    with store.engine.connect() as conn:  # the external-content index agrees with its table
        conn.exec_driver_sql(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)"
        )


def test_very_common_words_rank_the_newest_window(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.store import search

    monkeypatch.setattr(search, "RANK_WINDOW", 3)
    old = _turn(store, "q", "common word from long ago", "summarize")
    newer = [_turn(store, "q", f"common word {i}", "chat") for i in range(5)]
    hits = {h.message_id for h in store.search("common", limit=10)}
    assert hits == set(newer[-3:])  # the newest three matches, ranked
    # A skill filter with too few matches in the window looks at every match.
    assert [h.message_id for h in store.search("common", skill="summarize")] == [old]
