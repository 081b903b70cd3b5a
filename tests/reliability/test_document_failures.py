"""One crafted document fails alone (issue 21, item 7).

Before this test's commit a Flate bomb (80 MB of spaces in a 78 KB stream) made pypdf raise
``LimitReachedError`` (a ``PyPdfError``, not the ``PdfReadError`` the reader caught): `assistant
docs add` stopped at that file with a traceback, and the good files after it were never indexed.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from click.testing import CliRunner

from assistant.cli import main
from assistant.documents.reader import DocumentError, read_document


def pdf(content: bytes, *, flate: bool = False) -> bytes:
    """A one-page PDF whose page draws ``content`` (a content stream), with a right xref."""
    stream = zlib.compress(content, 9) if flate else content
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d%s >>\nstream\n" % (len(stream), b" /Filter /FlateDecode" if flate else b"")
        + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def flate_bomb() -> bytes:
    """80 MB once inflated, past pypdf's 75 MB ``zlib_maximum_output_length``."""
    return pdf(b" " * 80_000_000, flate=True)


def test_a_flate_bomb_is_a_document_error_naming_the_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(flate_bomb())
    assert bomb.stat().st_size < 100_000
    try:
        read_document(bomb)
    except DocumentError as exc:
        assert "safety limit of the PDF reader" in exc.message and str(bomb) in exc.message
    else:
        raise AssertionError("the bomb was read")


def test_docs_add_indexes_the_good_files_beside_a_crafted_pdf(tmp_path: Path) -> None:
    """Real MiniLM: the files before and after the bomb are indexed, the bomb is reported in
    one line, the exit status says something failed, and no traceback is printed."""
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "a-notes.md").write_text("Our office is at 12 Baker Street.")
    (folder / "b-bomb.pdf").write_bytes(flate_bomb())
    (folder / "c-report.pdf").write_bytes(
        pdf(b"BT /F1 12 Tf 72 720 Td (The harvest was late this year.) Tj ET"))
    (folder / "d-broken.pdf").write_bytes(b"%PDF-1.4\n" + b"\x00garbage" * 100)

    added = CliRunner().invoke(main, ["docs", "add", str(folder)])
    assert added.exit_code == 1, added.output
    assert isinstance(added.exception, SystemExit) and "Traceback" not in added.output
    skipped = [line for line in added.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2, added.stderr
    assert "b-bomb.pdf: goes past a safety limit of the PDF reader" in skipped[0]
    assert "d-broken.pdf: is not a readable PDF" in skipped[1]

    listed = CliRunner().invoke(main, ["docs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    paths = sorted(Path(json.loads(line)["path"]).name for line in listed.stdout.splitlines())
    assert paths == ["a-notes.md", "c-report.pdf"]
