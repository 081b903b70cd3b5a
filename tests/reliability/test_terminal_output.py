"""Text from an import, a document folder or a reply cannot drive the terminal (issue 21, item 6).

Before this test's commit `history list`, `history search` and `history show` printed an
imported title's OSC 52 (clipboard write), ``ESC[2J``, C1 CSI and bidi override raw, `docs
list` and `docs add` printed a file name's newline (a fake row), and error messages quoted
what they were given raw. Now each such character is printed as its escape (``\\x1b``).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from assistant.cli import main
from assistant.config import load_settings
from assistant.store import Store
from assistant.store.documents import NewChunk
from assistant.store.exchange import FORMAT_NAME

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"  # sets the clipboard to "rm -rf ~"
HOSTILE = f"Tax {OSC52}\x1b[2J\x9b31m\x85\u202eevil\nfake row\r\x00\x7f"
TIME = "2024-01-01T00:00:00+00:00"
_BIDI = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI", "LRM", "RLM", "ALM"}


def unsafe(output: str) -> list[str]:
    """Characters of ``output`` a terminal acts on (an oracle of its own, by Unicode class)."""
    return sorted({repr(c) for c in output if c != "\n" and (
        unicodedata.category(c) in ("Cc", "Zl", "Zp") or unicodedata.bidirectional(c) in _BIDI)})


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def import_hostile() -> None:
    message = {"id": "m1", "parent_id": None, "role": "user", "status": "complete",
               "content": f"first line\n{HOSTILE} receipts\u2028second", "created": TIME,
               "prompt_tokens": 0, "completion_tokens": 0, "skill": "chat\x1b[8m"}
    doc = {"format": FORMAT_NAME, "version": 1, "conversations": [{
        "id": "c1", "title": HOSTILE, "created": TIME, "updated": TIME, "archived": False,
        "pinned": False, "active_leaf_id": "m1", "messages": [message]}]}
    store = Store.open(load_settings())
    try:
        store.import_data(json.dumps(doc))
    finally:
        store.close()


def test_history_listings_print_control_characters_as_escapes() -> None:
    import_hostile()
    listed = run("history", "list")
    assert listed.exit_code == 0 and unsafe(listed.output) == []
    assert len(listed.stdout.splitlines()) == 1  # the title's newline made no second row
    assert "Tax \\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J\\x9b31m\\x85\\u202eevil\\nfake row" \
        in listed.stdout

    found = run("history", "search", "receipts")
    assert found.exit_code == 0 and unsafe(found.output) == []
    assert len(found.stdout.splitlines()) == 2  # one hit: its heading and its snippet
    assert "**receipts**" in found.stdout and "[user · chat\\x1b[8m]" in found.stdout

    shown = run("history", "show", "c1")
    assert shown.exit_code == 0 and unsafe(shown.output) == []
    body = [line.strip() for line in shown.stdout.splitlines()]
    assert "first line" in body  # the content's own newline still breaks the line
    assert any(line.endswith("receipts\\u2028second") for line in body)


def test_errors_quote_what_they_were_given_as_escapes() -> None:
    shown = run("history", "show", f"c9{OSC52}")
    assert shown.exit_code != 0 and unsafe(shown.output) == []
    assert "No conversation with id c9\\x1b]52;" in shown.stderr


def test_a_file_name_with_a_newline_cannot_fake_a_row_of_docs_list(tmp_path: Path) -> None:
    fake = "notes\n3f2a9c1b     1 chunks  /home/you/passwords.md"
    store = Store.open(load_settings())
    try:
        store.documents.add(str(tmp_path / f"{fake}\x1b[2J.md"), "t", "0" * 64,
                            [NewChunk(0, "line 1", "text", None)], 1)
    finally:
        store.close()
    listed = run("docs", "list")
    assert listed.exit_code == 0 and unsafe(listed.output) == []
    assert len(listed.stdout.splitlines()) == 1
    assert "notes\\n3f2a9c1b" in listed.stdout and "\\x1b[2J.md" in listed.stdout


def test_docs_add_names_a_file_with_a_newline_on_one_line(tmp_path: Path) -> None:
    """Real MiniLM: the file is indexed and reported on one line; so is one that fails."""
    good = tmp_path / "minutes\nadded shadow (9 chunks).md"
    good.write_text("The meeting moved to Thursday.")
    bad = tmp_path / "scan\x9b2J.pdf"
    bad.write_bytes(b"%PDF-1.4\nnot really")
    added = run("docs", "add", str(good), str(bad))
    assert added.exit_code == 1 and unsafe(added.stderr) == []
    reported = [line for line in added.stderr.splitlines()
                if line.startswith(("added ", "skipped: "))]
    assert len(reported) == 2, added.stderr
    assert reported[0].endswith("minutes\\nadded shadow (9 chunks).md (1 chunks)")
    assert "scan\\x9b2J.pdf" in reported[1]


def test_daemon_status_prints_problems_as_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A problem line holds plugin and exception text; ``daemon status`` printed it raw."""
    from assistant.client import Client

    status = {"status": "degraded", "version": "0", "llama_cpp": None, "cpu_variant": None,
              "pid": 1, "uptime_s": 1.0, "socket": "/s", "tcp": None, "queue_depth": 0,
              "threads": 2, "models": [],
              "problems": ["plugin 'x' failed to load: \x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\nfake"]}
    monkeypatch.setattr(Client, "require_daemon", lambda self: None)
    monkeypatch.setattr(Client, "get", lambda self, path: status)
    shown = run("daemon", "status")
    assert shown.exit_code == 0, shown.output
    assert unsafe(shown.output) == []
    assert "failed to load: \\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J\\nfake" in shown.stdout
