"""Documents: reading, chunking, storing (hash dedupe, all-or-nothing) and hybrid search."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.documents.chunking import chunk_sections
from assistant.documents.ingest import add_file
from assistant.documents.reader import DocumentError, Section, html_text, read_document
from assistant.documents.search import HybridSearch
from assistant.store import Store
from assistant.testing import hashed_vector
from assistant.text import sentences


async def fake_embed(texts: list[str]) -> list[list[float]]:
    return [hashed_vector(t) for t in texts]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    yield s  # type: ignore[misc]
    s.close()


def test_reader_locates_paragraphs_and_strips_html(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("# Title\n\nFirst para.\n\n\nSecond para.\n")
    doc = read_document(path)
    assert doc.title == "Title"
    assert [(s.location, s.text) for s in doc.sections] == [
        ("line 1", "# Title"), ("line 3", "First para."), ("line 6", "Second para.")]
    assert html_text("<head><script>x()</script></head><p>A &amp; B</p><p>C</p>") == "A & B\n\nC"


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
    assert (await add_file(store, path, fake_embed)).status == "added"
    docs = store.documents.all()
    assert len(docs) == 1 and docs[0].chunks == 1
    assert store.documents.remove(docs[0].id) and store.documents.all() == []


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
