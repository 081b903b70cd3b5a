"""`assistant history …` through click's CliRunner, against a real store in the test data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from assistant.cli import main
from assistant.config import load_settings
from assistant.store import Store


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["history", *args], input=input, catch_exceptions=False)


@pytest.fixture
def ids() -> list[str]:
    store = Store.open(load_settings())
    first = store.begin_turn(None, "How do I make sourdough bread?")
    store.finalize(first.assistant_message.id, status="complete",
                   content="Feed the starter, then knead the dough.", skill="chat")
    second = store.begin_turn(None, "/translate good morning")
    store.finalize(second.assistant_message.id, status="complete", content="bonjour",
                   skill="translate")
    store.close()
    return [first.conversation_id, second.conversation_id]


def test_list_show_and_json(ids: list[str]) -> None:
    result = run("list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith(ids[1]) and "/translate good morning" in lines[0]
    assert ids[0] in lines[1]
    rows = [json.loads(line) for line in run("list", "--json").stdout.splitlines()]
    assert {r["id"] for r in rows} == set(ids)
    assert [json.loads(x)["id"] for x in run("list", "--json", "--skill", "translate")
            .stdout.splitlines()] == [ids[1]]
    shown = run("show", ids[0]).stdout
    assert "How do I make sourdough bread?" in shown and "Feed the starter" in shown
    assert json.loads(run("show", ids[0], "--json").stdout)["conversations"][0]["id"] == ids[0]


def test_rename_pin_archive(ids: list[str]) -> None:
    assert run("rename", ids[0], "Bread").exit_code == 0
    assert run("pin", ids[0]).exit_code == 0
    assert run("archive", ids[1]).exit_code == 0
    listed = run("list").stdout.splitlines()
    assert len(listed) == 1 and "Bread" in listed[0] and "📌" in listed[0]
    assert len(run("list", "--all").stdout.splitlines()) == 2
    assert ids[1] in run("list", "--archived").stdout
    run("archive", ids[1], "--undo")
    assert len(run("list").stdout.splitlines()) == 2


def test_delete_asks_first(ids: list[str]) -> None:
    refused = CliRunner().invoke(main, ["history", "delete", ids[0]], input="n\n")
    assert refused.exit_code != 0 and "Delete" in refused.output
    assert ids[0] in run("list").stdout
    assert run("delete", ids[0], input="y\n").exit_code == 0
    assert ids[0] not in run("list").stdout
    assert run("delete", "--yes", ids[1]).exit_code == 0
    assert run("list").stdout.strip() == ""


def test_unknown_id_is_an_error_not_a_traceback(ids: list[str]) -> None:
    result = CliRunner().invoke(main, ["history", "show", "nope"])
    assert result.exit_code == 1
    assert "error: No conversation with id nope." in result.output


def test_search_with_skill_filter(ids: list[str]) -> None:
    out = run("search", "starter").stdout
    assert ids[0] in out and "**starter**" in out
    assert run("search", "bonjour", "--skill", "chat").stdout == ""
    assert ids[1] in run("search", "bonjour", "--skill", "translate").stdout


def test_export_import_round_trip_through_files(ids: list[str], tmp_path: Path) -> None:
    target = tmp_path / "all.json"
    assert run("export", "--all", "-o", str(target)).exit_code == 0
    md = run("export", ids[0], "--format", "md").stdout
    assert md.startswith("# How do I make sourdough bread?")
    assert CliRunner().invoke(main, ["history", "export"]).exit_code != 0  # IDs or --all
    run("delete", "--yes", ids[0])
    result = run("import", str(target))
    assert "Imported 1 conversation(s), skipped 1 already present." in result.output
    assert ids[0] in run("list").stdout


def test_import_malformed_file_reports_and_changes_nothing(
    ids: list[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "assistant-conversations", "version": 1,\n"conversations": [\n')
    result = CliRunner().invoke(main, ["history", "import", str(bad)])
    assert result.exit_code == 1
    assert "invalid JSON at line 3" in result.output
    chatgpt = tmp_path / "conversations.json"
    chatgpt.write_text(json.dumps([{"id": "x", "mapping": {"n": {"parent": 3}}}]))
    result = CliRunner().invoke(main, ["history", "import", str(chatgpt), "--format", "chatgpt"])
    assert result.exit_code == 1 and "[0].mapping.n.parent" in result.output
    assert len(run("list").stdout.splitlines()) == 2


def test_a_compaction_summary_is_shown_and_can_be_undone_and_redone(ids: list[str]) -> None:
    store = Store.open(load_settings())
    turn = store.begin_turn(ids[0], "And rye bread?")
    summary = store.add_summary(turn.user_message.id, "They discussed sourdough.")
    store.close()
    shown = run("show", ids[0]).stdout
    assert f"[summary] {summary.id}" in shown and "They discussed sourdough." in shown
    assert "undone" in run("undo", summary.id).stdout
    assert f"[summary · undone] {summary.id}" in run("show", ids[0]).stdout
    assert "in force" in run("undo", summary.id, "--redo").stdout
    not_one = CliRunner().invoke(main, ["history", "undo", turn.user_message.id])
    assert not_one.exit_code != 0 and "not a summary" in not_one.output
    assert "Traceback" not in not_one.output


def test_search_highlighting_styles_only_the_stores_balanced_marks() -> None:
    """The snippet's private-use marks became the style's escape codes after the text was made
    safe, so a message holding U+E000 printed a real ESC[1;33m (and U+E001 an ESC[0m)."""
    from assistant.cli.history import highlighted

    marks, start, end = ("\ue000", "\ue001"), "\x1b[1;33m", "\x1b[0m"
    assert highlighted("a \ue000tax\ue001 b", marks, start, end) == f"a {start}tax{end} b"
    hostile = "x\ue000 \ue000tax\ue001 \ue001y\x1b[2J"
    shown = highlighted(hostile, marks, start, end)
    assert shown == f"x\\ue000 {start}tax{end} \\ue001y\\x1b[2J"
    assert shown.count("\x1b") == 2
