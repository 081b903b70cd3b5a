"""Documents: reading, chunking, storing (hash dedupe, all-or-nothing) and hybrid search."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from assistant.documents.chunking import CHUNKER_VERSION, chunk_sections
from assistant.documents.ingest import Outcome, add_file
from assistant.documents.reader import DocumentError, Section, html_text, read_document
from assistant.documents.search import HybridSearch, by_sentence
from assistant.store import Store, migrations
from assistant.store.documents import DocumentInfo, DocumentRepository, NewChunk
from assistant.store.schema import format_time
from assistant.testing import hashed_vector
from assistant.text import sentences
from tests.databases import Database


async def fake_embed(texts: list[str]) -> list[list[float]]:
    return [hashed_vector(t) for t in texts]


@pytest.fixture
def store(database: Database) -> Store:
    s = Store.open(database.fresh("db"))
    yield s  # type: ignore[misc]
    s.close()


def test_reader_locates_paragraphs_and_strips_html(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("# Title\n\nFirst para.\n\n\nSecond para.\n")
    doc = read_document(path)
    assert doc.title == "Title"
    assert [(s.location, s.text) for s in doc.sections] == [
        ("Title, line 1", "# Title"), ("Title, line 3", "First para."),
        ("Title, line 6", "Second para.")]
    assert html_text("<head><script>x()</script></head><p>A &amp; B</p><p>C</p>") == "A & B\n\nC"


def test_each_paragraph_is_located_in_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "llm.md"
    path.write_text("Preface without a heading.\n\n## 1. 背景介绍\n\n语言模型的历史。\n\n"
                    "```sh\n# a comment, not a heading\n\nmake run\n```\n\n"
                    "## 2. 评估指标\n困惑度和 BLEU。\n\n### 2.1 人工评估\n\n人工打分。\n",
                    encoding="utf-8")
    located = [(s.location, s.text.splitlines()[0]) for s in read_document(path).sections]
    assert located == [
        ("line 1", "Preface without a heading."),
        ("1. 背景介绍, line 3", "## 1. 背景介绍"),
        ("1. 背景介绍, line 5", "语言模型的历史。"),
        ("1. 背景介绍, line 7", "```sh"),
        ("1. 背景介绍, line 10", "make run"),
        ("2. 评估指标, line 13", "## 2. 评估指标"),
        ("2.1 人工评估, line 16", "### 2.1 人工评估"),
        ("2.1 人工评估, line 18", "人工打分。"),
    ]


def test_headings_are_read_only_where_they_are_headings(tmp_path: Path) -> None:
    def located(name: str, text: str) -> list[str]:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return [s.location for s in read_document(path).sections]

    # A '#' line of a plain text file is not a heading.
    assert located("todo.txt", "# TODO buy milk\n\nCall the bank.") == ["line 1", "line 3"]
    # Setext headings, a heading ending in '#', a ``` inside a ~~~ fence.
    assert located("a.md", "Overview\n========\n\nText.\n\n## Why C#\n\nBecause.\n\n"
                           "~~~\n```\n# not a heading\n~~~\n\nAfter.") == [
        "Overview, line 1", "Overview, line 4", "Why C#, line 6", "Why C#, line 8",
        "Why C#, line 10", "Why C#, line 15"]
    # HTML headings name their sections.
    assert located("p.html", "<h1>Guide</h1><p>Intro.</p><h2>Setup</h2><p>Steps.</p>") == [
        "Guide, line 1", "Guide, line 3", "Setup, line 5", "Setup, line 7"]


@pytest.mark.parametrize(("name", "data", "message"), [
    ("x.bin", b"abc", "unsupported"),
    ("x.txt", b"\x00\x01binary", "binary"),
    ("x.txt", b"\xff\xfe\xfa", "UTF-8"),
    ("x.txt", b"  \n\n ", "no text"),
    ("x.pdf", b"%PDF-1.4 not really", "PDF"),
])
def test_bad_files_are_refused_with_a_reason(tmp_path: Path, name: str, data: bytes,
                                             message: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DocumentError, match=message):
        read_document(path)


def test_pdf_without_text_layer_is_refused(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    path = tmp_path / "scan.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    with pytest.raises(DocumentError, match="no text layer"):
        read_document(path)


def test_chunks_are_whole_sentences_within_the_size() -> None:
    text = " ".join(f"Sentence {i} talks about topic {i}." for i in range(100))
    chunks = chunk_sections([Section("line 1", text)], lambda t: sentences(t, "en"),
                            max_chars=300)
    assert len(chunks) > 5 and all(len(c.text) <= 300 for c in chunks)
    assert all(c.text.endswith(".") and c.text.startswith("Sentence") for c in chunks)
    assert " ".join(c.text for c in chunks) == text


def test_short_paragraphs_stay_apart_and_a_heading_joins_its_paragraph() -> None:
    facts = ["The warranty lasts two years and covers all parts, but not water damage.",
             "Our office is at 12 Baker Street. It is open from nine to five on weekdays.",
             "The refund policy allows returns within 30 days of purchase with a receipt."]
    sections = [Section(f"line {i}", t) for i, t in enumerate(["Policies", *facts], 1)]
    chunks = chunk_sections(sections, lambda t: sentences(t, "en"))
    assert [c.text for c in chunks] == [f"Policies\n\n{facts[0]}", facts[1], facts[2]]
    assert [c.location for c in chunks] == ["line 1", "line 3", "line 4"]


@pytest.mark.asyncio
async def test_adding_twice_is_a_no_op_and_a_change_replaces(tmp_path: Path,
                                                             store: Store) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("The refund policy allows returns within 30 days.\n\nOffice: Baker Street.")
    first = await add_file(store, path, fake_embed)
    again = await add_file(store, path, fake_embed)
    assert (first.status, again.status) == ("added", "unchanged")
    path.write_text("Returns are accepted within 60 days.")
    assert (await add_file(store, path, fake_embed)).status == "updated"
    docs = store.documents.all()
    assert len(docs) == 1 and docs[0].chunks == 1
    assert store.documents.remove(docs[0].id) and store.documents.all() == []


class CountingEmbed:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.texts += texts
        return await fake_embed(texts)


def _chunk_seqs(store: Store) -> list[int]:
    with store.engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT seq FROM chunks ORDER BY seq")]


def _set_chunker_version(store: Store, version: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE documents SET chunker_version = :v"), {"v": version})


async def _indexed_notes(tmp_path: Path, store: Store) -> tuple[Path, CountingEmbed, Outcome]:
    path = tmp_path / "notes.txt"
    path.write_text("The refund policy allows returns within 30 days.\n\nOffice: Baker Street.")
    embed = CountingEmbed()
    return path, embed, await add_file(store, path, embed)


@pytest.mark.asyncio
async def test_an_unchanged_file_chunked_by_this_chunker_is_skipped(
        tmp_path: Path, store: Store) -> None:
    path, embed, first = await _indexed_notes(tmp_path, store)
    seqs, embedded = _chunk_seqs(store), len(embed.texts)
    again = await add_file(store, path, embed)
    assert (again.status, again.document_id) == ("unchanged", first.document_id)
    assert (_chunk_seqs(store), len(embed.texts)) == (seqs, embedded)
    assert [d.chunker_version for d in store.documents.all()] == [CHUNKER_VERSION]


@pytest.mark.asyncio
async def test_an_unchanged_file_chunked_by_an_older_chunker_is_chunked_again(
        tmp_path: Path, store: Store) -> None:
    path, embed, first = await _indexed_notes(tmp_path, store)
    embedded = len(embed.texts)
    _set_chunker_version(store, CHUNKER_VERSION - 1)
    again = await add_file(store, path, embed)
    assert (again.status, again.chunks) == ("updated", first.chunks)
    assert again.document_id != first.document_id  # stored anew, the old one replaced
    assert len(embed.texts) == 2 * embedded  # every chunk embedded anew
    assert len(_chunk_seqs(store)) == first.chunks
    [doc] = store.documents.all()
    assert (doc.id, doc.chunks, doc.chunker_version) == (again.document_id, first.chunks,
                                                         CHUNKER_VERSION)
    assert (await add_file(store, path, embed)).status == "unchanged"


@pytest.mark.asyncio
async def test_documents_stored_before_chunker_versions_are_chunked_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The migration that adds the version gives existing documents one no chunker has."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    every = migrations.MIGRATIONS
    monkeypatch.setattr(migrations, "MIGRATIONS", every[:2])
    monkeypatch.setattr(migrations, "LATEST", 2)
    path = tmp_path / "notes.txt"
    path.write_text("Our office is at 12 Baker Street.")
    old = Store.open(url)
    with old.engine.begin() as conn:  # as the version 2 schema stored a document
        conn.exec_driver_sql(
            "INSERT INTO documents (id, path, title, sha256, added) VALUES (?, ?, ?, ?, ?)",
            ("d" * 32, str(path.resolve()), "notes", read_document(path).sha256,
             "2025-01-01T00:00:00.000000Z"))
        conn.exec_driver_sql("INSERT INTO chunks (document_id, position, location, text) "
                             "VALUES (?, 0, 'line 1', 'Our office')", ("d" * 32,))
    old.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", every)
    monkeypatch.setattr(migrations, "LATEST", every[-1].version)

    store = Store.open(url)
    try:
        [doc] = store.documents.all()
        assert (doc.id, doc.chunks, doc.chunker_version) == ("d" * 32, 1, 0)
        outcome = await add_file(store, path, fake_embed)
        assert outcome.status == "updated"
        [doc] = store.documents.all()
        assert doc.chunker_version == CHUNKER_VERSION and doc.id == outcome.document_id
        [chunk] = store.documents.chunks(_chunk_seqs(store))
        assert chunk.text == "Our office is at 12 Baker Street."
    finally:
        store.close()


@pytest.mark.asyncio
async def test_failed_embedding_stores_nothing(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "a.txt"
    path.write_text("Some text to index.")

    async def broken(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedding host died")

    with pytest.raises(RuntimeError):
        await add_file(store, path, broken)
    assert store.documents.all() == []


@pytest.mark.asyncio
async def test_hybrid_search_finds_the_right_chunk_and_nothing_for_unrelated(
        tmp_path: Path, store: Store) -> None:
    path = tmp_path / "facts.md"
    filler = " It is written down here so that this paragraph is long enough to stand alone."
    path.write_text("The warranty lasts two years and covers parts." + filler * 3 + "\n\n"
                    "Our office is at 12 Baker Street in London." + filler * 3 + "\n\n"
                    "The cafeteria serves soup on Fridays." + filler * 3)
    await add_file(store, path, fake_embed)
    search = HybridSearch(store, fake_embed, min_similarity=0.5)
    hits = await search.search("warranty lasts two years", 3)
    assert hits[0]["text"].startswith("The warranty") and hits[0]["n"] == 1
    assert hits[0]["source"] == "facts.md, line 1"
    assert await search.search("quantum chromodynamics lattice gauge", 3) == []
    # Far from every embedding, but holding three of the question's four own words: found.
    named = await HybridSearch(store, fake_embed, min_similarity=1.1).search(
        "At what address is the Baker Street office?", 3)
    assert [h["text"][:24] for h in named] == ["Our office is at 12 Bake"]
    assert await HybridSearch(store, fake_embed, min_similarity=1.1).search(
        "Which office serves the Monday soup?", 3) == []  # two of four: not enough
    soup = await HybridSearch(store, fake_embed, min_similarity=1.1).search(
        "Which office serves the Friday soup?", 3)  # "Fridays" by its stem: three of four
    assert [h["text"][:24] for h in soup] == ["The cafeteria serves sou"]
    # "Which" asks, it does not name: two of "street", "London", "shop" are enough.
    asked = await HybridSearch(store, fake_embed, min_similarity=1.1).search(
        "Which street has the London shop?", 3)
    assert [h["text"][:24] for h in asked] == ["Our office is at 12 Bake"]


@pytest.mark.asyncio
async def test_hits_are_ranked_by_their_sentence_that_best_matches_the_question() -> None:
    diluted = {"text": "The franchise had its best season. The Panthers won fifteen games. "
                       "Fans filled the stadium every week.", "document": "a.txt"}
    answering = {"text": "The Panthers franchise was founded in 1995 by Jerry Richardson. "
                         "It plays in Charlotte.", "document": "b.txt"}
    question = "When was the Panthers franchise founded?"
    ranked = await by_sentence(question, [diluted, answering], fake_embed, sentences)
    assert [h["document"] for h in ranked] == ["b.txt", "a.txt"]
    assert ranked[0]["match"] > ranked[1]["match"]  # qa leaves out passages matching far worse
    assert await by_sentence(question, [diluted], fake_embed, sentences) == [diluted]


@pytest.mark.asyncio
async def test_a_sentence_matches_another_form_of_the_questions_words() -> None:
    other = {"text": "Gold footballs were given to each high school. The field was painted gold.",
             "document": "a.txt"}
    answering = {"text": "CBS introduced pylon cameras and microphones during the telecast.",
                 "document": "b.txt"}
    question = "What was put on pylons during the telecast?"
    ranked = await by_sentence(question, [other, answering], fake_embed, sentences, lang="en")
    plain = await by_sentence(question, [other, answering], fake_embed, sentences)
    assert ranked[0]["document"] == "b.txt"
    assert ranked[0]["match"] > next(h for h in plain if h["document"] == "b.txt")["match"]


@pytest.mark.asyncio
async def test_search_numbers_its_hits_in_the_order_it_ranks_them(
        tmp_path: Path, store: Store) -> None:
    path = tmp_path / "team.md"
    path.write_text("The franchise had its best season. The Panthers won fifteen games. Fans "
                    "filled the stadium every week, and the franchise sold out its games.\n\n"
                    "The Panthers franchise was founded in 1995. It plays in Charlotte.\n\n"
                    "The cafeteria serves soup on Fridays and salad on Mondays.")
    await add_file(store, path, fake_embed)
    search = HybridSearch(store, fake_embed, min_similarity=0.1)
    hits = await search.search("When was the Panthers franchise founded?", 2)
    assert len(hits) == 2 and [h["n"] for h in hits] == [1, 2]
    assert "founded in 1995" in hits[0]["text"]


def test_docs_add_says_which_files_it_updated(tmp_path: Path) -> None:
    """`assistant docs add` (real MiniLM): added, then unchanged, then updated once the
    stored chunks are from an older chunker."""
    from click.testing import CliRunner

    from assistant.cli import main
    from assistant.config import load_settings

    path = tmp_path / "notes.md"
    path.write_text("Our office is at 12 Baker Street.")
    runner = CliRunner()

    def add() -> str:
        result = runner.invoke(main, ["docs", "add", str(path)])
        assert result.exit_code == 0, result.output
        return result.stderr

    assert f"added {path.resolve()} (1 chunks)" in add()
    assert f"unchanged {path.resolve()}" in add()
    store = Store.open(load_settings())
    try:
        _set_chunker_version(store, 0)
    finally:
        store.close()
    assert f"updated {path.resolve()} (1 chunks)" in add()


@pytest.mark.asyncio
async def test_search_sees_chunks_replaced_in_place(tmp_path: Path, store: Store) -> None:
    """A file re-chunked into as many chunks as before takes back the same seqs (SQLite
    reuses the highest rowids); the search must not keep the old embeddings for them."""
    path = tmp_path / "notes.md"
    path.write_text("The warranty lasts two years and covers every part of the machine.")
    await add_file(store, path, fake_embed)
    search = HybridSearch(store, fake_embed, min_similarity=0.9)
    assert [h["similarity"] for h in await search.search(path.read_text(), 3)] == [1.0]
    before = _chunk_seqs(store)
    path.write_text("The cafeteria serves tomato soup with bread on Fridays at noon.")
    await add_file(store, path, fake_embed)
    if store.engine.dialect.name == "sqlite":
        assert _chunk_seqs(store) == before
    else:  # an identity column never hands a number out twice
        assert len(_chunk_seqs(store)) == len(before) and _chunk_seqs(store) != before
    [hit] = await search.search(path.read_text(), 3)
    assert (hit["text"], hit["similarity"]) == (path.read_text(), 1.0)


LLM_OVERVIEW_ZH = """# 1. 背景介绍

大语言模型是在海量文本上训练的神经网络，能够理解和生成自然语言。
近年来，它们在翻译、问答和写作等任务上进步很快。

# 2. Transformer 架构

Transformer 依靠自注意力机制处理序列，不再使用循环结构。
编码器和解码器都由多层注意力和前馈网络堆叠而成。

# 3. 预训练与微调

模型先在无标注语料上预训练，学习语言的一般规律，
再用少量标注数据微调，以适应具体的下游任务。

# 4. 评估方法

衡量大语言模型的性能，常用的指标有困惑度、BLEU、ROUGE 和准确率，
此外还需要人工评测回答的质量和安全性。

# 5. 日本語の資料

大規模言語モデルの評価には、複数のベンチマークを使います。検索拡張生成も広く使われています。
"""


# Each section of LLM_OVERVIEW_ZH (and an English note) by words only it holds.
SECTIONS = {"海量文本": "background", "自注意力机制": "transformer", "无标注语料": "finetuning",
            "困惑度": "evaluation", "ベンチマーク": "japanese", "predicts a sample": "english"}


def _add_as_version_3(self: DocumentRepository, path: str, title: str, sha256: str,
                      chunks: list[NewChunk], chunker_version: int,
                      language: str | None = None) -> DocumentInfo:
    """:meth:`DocumentRepository.add` as the code of schema version 3 stored a document."""
    doc_id, now = uuid.uuid4().hex, datetime.now(UTC)
    with self.store._write() as conn:
        conn.execute(text("INSERT INTO documents (id, path, title, sha256, added, "
                          "chunker_version) VALUES (:id, :path, :title, :sha, :at, :v)"),
                     {"id": doc_id, "path": path, "title": title, "sha": sha256,
                      "at": format_time(now), "v": chunker_version})
        conn.execute(text("INSERT INTO chunks (document_id, position, location, text, "
                          "embedding) VALUES (:d, :p, :l, :t, :e)"),
                     [{"d": doc_id, "p": c.position, "l": c.location, "t": c.text,
                       "e": c.embedding} for c in chunks])
    return DocumentInfo(doc_id, path, title, sha256, now, len(chunks), chunker_version)


def _keyword_hits(store: Store, question: str) -> list[str]:
    """The sections whose chunks keyword search finds for ``question``, best first."""
    seqs = [seq for seq, _ in store.documents.keyword_search(question)]
    return [next(name for words, name in SECTIONS.items() if words in c.text)
            for c in store.documents.chunks(seqs)]


@pytest.mark.asyncio
async def test_keyword_search_finds_chinese_and_japanese_words_inside_longer_runs(
        tmp_path: Path, store: Store) -> None:
    path = tmp_path / "llm.md"
    path.write_text(LLM_OVERVIEW_ZH)
    await add_file(store, path, fake_embed)
    assert _keyword_hits(store, "模型") == ["background", "finetuning", "evaluation"]
    assert _keyword_hits(store, "指标") == ["evaluation"]
    assert _keyword_hits(store, "文档中提到了哪些评估大语言模型性能的指标？")[0] == "evaluation"
    assert _keyword_hits(store, "预训练和微调是什么？") == ["finetuning"]
    assert _keyword_hits(store, "什么是Transformer？") == ["transformer"]
    assert _keyword_hits(store, "評価にはどんなベンチマークを使いますか") == ["japanese"]
    assert _keyword_hits(store, "検索") == ["japanese"]
    assert _keyword_hits(store, "What is BLEU?") == ["evaluation"]  # English as before
    assert _keyword_hits(store, "量子色动力学") == []
    english = tmp_path / "english.md"
    english.write_text("Perplexity measures how well a language model predicts a sample.")
    await add_file(store, english, fake_embed)
    assert _keyword_hits(store, "perplexity是什么？") == ["english"]  # the word index too
    assert _keyword_hits(store, "什么是Transformer？") == ["transformer"]
    search = HybridSearch(store, fake_embed, min_similarity=0.0)
    hits = await search.search("文档中提到了哪些评估大语言模型性能的指标？", 1)
    assert "困惑度" in hits[0]["text"]


@pytest.mark.asyncio
async def test_documents_stored_before_migration_4_are_found_by_chinese_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    every = migrations.MIGRATIONS
    monkeypatch.setattr(migrations, "MIGRATIONS", every[:3])
    monkeypatch.setattr(migrations, "LATEST", 3)
    path = tmp_path / "llm.md"
    path.write_text(LLM_OVERVIEW_ZH)
    old = Store.open(url)
    with monkeypatch.context() as patched:  # as version 3's code: no language, no owner
        patched.setattr("assistant.text.detect_language", lambda text: "und")
        patched.setattr(DocumentRepository, "by_path", lambda self, path: None)
        patched.setattr(DocumentRepository, "add", _add_as_version_3)
        await add_file(old, path, fake_embed)
    old.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", every)
    monkeypatch.setattr(migrations, "LATEST", every[-1].version)
    store = Store.open(url)
    try:
        assert _keyword_hits(store, "指标") == ["evaluation"]
        assert _keyword_hits(store, "自注意力机制") == ["transformer"]
        with store.engine.connect() as conn:
            conn.exec_driver_sql(
                "INSERT INTO chunks_cjk (chunks_cjk, rank) VALUES ('integrity-check', 1)")
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM chunks_cjk").scalar() == 5
        store.documents.remove(str(path.resolve()))
        assert _keyword_hits(store, "指标") == [] and _keyword_hits(store, "自注意力") == []
    finally:
        store.close()
