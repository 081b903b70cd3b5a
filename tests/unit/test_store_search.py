"""Full-text search: ranking, snippets, skill filter, and the index kept in step by triggers
(FTS5's on SQLite) or generated columns (tsvector on PostgreSQL). Every test with a ``store``
runs on both; where the two legitimately differ, the test says how."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.store import Store, cjk, migrations
from assistant.store.search import fts_query
from tests.databases import Database, sqlite_only


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
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
    if store.engine.dialect.name == "sqlite":
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


# -- Chinese, Japanese, Korean: substrings through the trigram index (migration 4) -------------

def test_chinese_two_character_words_are_found_inside_longer_runs(store: Store) -> None:
    question = store.begin_turn(None, "大语言模型的评估指标有哪些").user_message.id
    answer = _turn(store, "q", "常用的指标包括困惑度和BLEU。", "chat")
    other = _turn(store, "q", "这个模型越大越好", "chat")
    _turn(store, "q", "pelican facts in English", "chat")
    assert {h.message_id for h in store.search("模型")} == {question, other}
    assert {h.message_id for h in store.search("指标")} == {question, answer}
    assert {h.message_id for h in store.search("模")} == {question, other}  # one character
    assert [h.message_id for h in store.search("评估指标")] == [question]  # a trigram phrase
    assert [h.message_id for h in store.search("大语言模型 指标")] == [question]  # all required
    assert [h.message_id for h in store.search("bleu 指标")] == [answer]  # mixed scripts
    assert store.search("模型 pelican") == [] and store.search("不存在") == []
    [hit] = store.search("大语言模型 指标")
    assert hit.snippet == "**大语言模型**的评估**指标**有哪些"
    marked = store.search("指标", highlight=("<mark>", "</mark>"))
    assert "常用的<mark>指标</mark>包括困惑度和BLEU。" in {h.snippet for h in marked}


def test_japanese_kana_and_kanji_are_found_inside_longer_runs(store: Store) -> None:
    documents = _turn(store, "q", "日本語の文書を全文検索するには", "chat")
    engine = _turn(store, "q", "検索エンジンを使います。", "chat")
    assert {h.message_id for h in store.search("検索")} == {documents, engine}
    assert [h.message_id for h in store.search("文書")] == [documents]
    assert [h.message_id for h in store.search("エンジン")] == [engine]  # katakana phrase
    assert [h.message_id for h in store.search("の文書を")] == [documents]  # with hiragana
    assert store.search("けんさく") == []
    korean = _turn(store, "q", "언어모델을 평가합니다", "chat")
    assert [h.message_id for h in store.search("모델")] == [korean]  # Korean too


def test_chinese_results_are_ranked_and_windowed(store: Store) -> None:
    sparse = _turn(store, "q", "这是一段很长的文字，讲的是很多不同的事情，"
                   "其中只有一次提到评估指标，其余都是关于天气、饮食和旅行的内容。", "chat")
    dense = _turn(store, "q", "评估指标：评估指标很重要。", "chat")
    hits = store.search("评估指标")
    assert [h.message_id for h in hits] == [dense, sparse] and hits[0].rank < hits[1].rank
    # Short terms alone have no bm25: how often a message holds them ranks it.
    hits = store.search("指标")
    assert [h.message_id for h in hits] == [dense, sparse] and hits[0].rank < hits[1].rank
    long = _turn(store, "q", "天气" * 200 + "模型" + "饮食" * 200, "chat")
    [hit] = store.search("模型")
    assert hit.message_id == long and "**模型**" in hit.snippet
    assert hit.snippet.startswith("…") and hit.snippet.endswith("…") and len(hit.snippet) < 80


def test_english_words_written_against_chinese_are_found_after_word_matches(
        store: Store) -> None:
    glued = _turn(store, "q", "用Python写一个爬虫", "chat")
    spaced = _turn(store, "q", "python tips and python tricks", "chat")
    hits = store.search("python")
    assert [h.message_id for h in hits] == [spaced, glued]
    assert hits[0].rank <= hits[1].rank and hits[1].snippet == "用**Python**写一个爬虫"
    assert [h.message_id for h in store.search("python", limit=1)] == [spaced]
    assert [h.message_id for h in store.search("pyth*")] == [spaced, glued]
    assert [h.message_id for h in store.search("python", skill="translate")] == []


@sqlite_only
def test_trigram_index_alone_misses_two_character_words(store: Store) -> None:
    """Why short terms go through LIKE: FTS5's trigram tokenizer matches nothing shorter than
    three characters, not even a message that is exactly the term."""
    exact = _turn(store, "q", "模型", "chat")
    inside = _turn(store, "q", "大模型很好", "chat")
    with store.engine.connect() as conn:
        def match(query: str) -> list[object]:
            return conn.exec_driver_sql(
                "SELECT rowid FROM messages_cjk WHERE messages_cjk MATCH ?", (query,)).all()

        assert match('"模型"') == [] and match('"模型"*') == []
        assert len(match('"大模型"')) == 1
    assert {h.message_id for h in store.search("模型")} == {exact, inside}


def test_cjk_query_syntax_cannot_break_search(store: Store) -> None:
    _turn(store, "q", "模型_版本 100% 完成", "chat")
    _turn(store, "q", "模型X版本", "chat")
    for nasty in ['"模型', "模型 AND", "模型*", "NEAR(模型", "col:模型", "模型'; DROP TABLE"]:
        store.search(nasty)  # no exception
    assert [h.snippet for h in store.search("型_")] == ["模**型_**版本 100% 完成"]  # not型X
    assert len(store.search("模型*")) == 2  # a substring search is a prefix search already


def test_cjk_skill_filter_and_index_follow_edits_and_deletes(store: Store) -> None:
    translated = store.begin_turn(None, "翻译：你好")
    store.finalize(translated.assistant_message.id, status="complete", content="hello 你好",
                   skill="translate")
    chatted = _turn(store, "你好吗", "我很好，你好", "chat")
    assert {h.message_id for h in store.search("你好", skill="translate")} == {
        translated.user_message.id, translated.assistant_message.id}
    assert {h.message_id for h in store.search("我很好", skill="chat")} == {chatted}
    assert store.search("你好", skill="summarize") == []
    turn = store.begin_turn(None, "question")
    store.save_partial(turn.assistant_message.id, "临时的草稿")
    assert len(store.search("草稿")) == 1 and len(store.search("临时的草稿")) == 1
    store.finalize(turn.assistant_message.id, status="complete", content="final words")
    assert store.search("草稿") == [] and store.search("临时的草稿") == []
    store.delete(translated.conversation_id)
    assert store.search("翻译") == []
    if store.engine.dialect.name != "sqlite":
        return  # PostgreSQL has no CJK index: substrings of the rows, found above
    with store.engine.connect() as conn:  # only CJK rows are indexed, and the index agrees
        conn.exec_driver_sql(
            "INSERT INTO messages_cjk (messages_cjk, rank) VALUES ('integrity-check', 1)")
        indexed = conn.exec_driver_sql("SELECT COUNT(*) FROM messages_cjk").scalar()
        total = conn.exec_driver_sql("SELECT COUNT(*) FROM messages").scalar()
    assert (indexed, total) == (2, 4)  # chatted's question and answer; not "question"


def test_a_database_from_before_migration_4_finds_chinese_in_old_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    every = migrations.MIGRATIONS
    monkeypatch.setattr(migrations, "MIGRATIONS", every[:3])
    monkeypatch.setattr(migrations, "LATEST", 3)
    old = Store.open(url)
    turn = old.begin_turn(None, "大语言模型的评估指标有哪些")
    with old.engine.begin() as conn:  # as version 3's code finalized it (no confidence yet)
        conn.exec_driver_sql(
            "UPDATE messages SET status = 'complete', content = ?, skill = 'qa' WHERE id = ?",
            ("pelican 指标", turn.assistant_message.id))
    with old.engine.connect() as conn:  # version 3's index holds the whole run only
        assert conn.exec_driver_sql(
            "SELECT rowid FROM messages_fts WHERE messages_fts MATCH '\"模型\"'").all() == []
    old.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", every)
    monkeypatch.setattr(migrations, "LATEST", every[-1].version)
    store = Store.open(url)
    try:
        assert [h.message_id for h in store.search("模型")] == [turn.user_message.id]
        assert [h.message_id for h in store.search("评估指标")] == [turn.user_message.id]
        assert {h.message_id for h in store.search("指标")} == {
            turn.user_message.id, turn.assistant_message.id}
        assert [h.message_id for h in store.search("pelican")] == [turn.assistant_message.id]
        with store.engine.connect() as conn:
            conn.exec_driver_sql(
                "INSERT INTO messages_cjk (messages_cjk, rank) VALUES ('integrity-check', 1)")
    finally:
        store.close()


def test_the_indexed_scripts_are_the_ones_migration_4_froze() -> None:
    """Changing assistant.store.cjk.RANGES needs a new migration for the rows indexed."""
    assert cjk.glob_class() == migrations._CJK_V4
    assert cjk.has_cjk("模") and cjk.has_cjk("かな") and cjk.has_cjk("𠀀")
    assert not cjk.has_cjk("café, 100%")
