"""Exports: private, never written through a planted link, streamed (issue 21, items 9, 10).

Before this test's commit `history export -o out.json` wrote ``out.json.part`` with
``Path.write_text`` (following a symlink planted there onto a victim file, with the umask's
0644), and both the CLI and ``GET /api/export`` built the whole export in memory (the list of
every conversation, then one string; eight abandoned exports of a 93 MB history held 900 MB).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.config import load_settings
from assistant.store import Store
from assistant.store.records import Conversation, Message
from assistant.testing import InProcessDaemon

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def history(count: int, text_bytes: int) -> list[Conversation]:
    """``count`` conversations of four messages of ``text_bytes`` each."""
    out = []
    for i in range(count):
        messages = tuple(Message(
            id=f"m{i}-{j}", conversation_id=f"c{i}", parent_id=f"m{i}-{j - 1}" if j else None,
            role="user" if j % 2 == 0 else "assistant", status="complete",
            content=f"{i}/{j} " + "lorem ipsum " * (text_bytes // 12),
            created=T0 + timedelta(seconds=i)) for j in range(4))
        out.append(Conversation(id=f"c{i}", title=f"conversation {i}", created=messages[0].created,
                                updated=messages[0].created, active_leaf_id=messages[-1].id,
                                messages=messages))
    return out


def fill(store: Store, count: int = 400, text_bytes: int = 5000) -> None:
    store.add_conversations(history(count, text_bytes))


# -- item 9: the file the CLI writes --------------------------------------------------------

def test_export_never_writes_through_a_planted_part_file(tmp_path: Path) -> None:
    store = Store.open(load_settings())
    fill(store, count=3, text_bytes=100)
    store.close()
    folder = tmp_path / "exports"
    folder.mkdir()
    victim = folder / "victim.txt"
    victim.write_text("precious")
    out = folder / "out.json"
    (folder / "out.json.part").symlink_to(victim)
    old_umask = os.umask(0o022)
    try:
        result = CliRunner().invoke(main, ["history", "export", "--all", "-o", str(out)])
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and not out.is_symlink()
    assert [c["id"] for c in json.loads(out.read_text())["conversations"]] == ["c0", "c1", "c2"]
    # Nothing of the temporary file is left beside it; the planted link is left alone.
    assert sorted(p.name for p in folder.iterdir()) == ["out.json", "out.json.part",
                                                        "victim.txt"]


def test_export_replaces_a_symlink_at_the_output_not_its_target(tmp_path: Path) -> None:
    Store.open(load_settings()).close()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o644)
    out = tmp_path / "out.md"
    out.symlink_to(victim)
    result = CliRunner().invoke(main, ["history", "export", "--all", "--format", "md",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not out.is_symlink() and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_export_to_a_missing_folder_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    Store.open(load_settings()).close()
    result = CliRunner().invoke(main, ["history", "export", "--all",
                                       "-o", str(tmp_path / "nowhere" / "out.json")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: Cannot write" in result.stderr and "No such file or directory" in result.stderr


# -- item 10: exports are streamed ----------------------------------------------------------

def _peak_while(run: Any) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_cli_export_of_a_large_history_is_written_as_it_is_read(tmp_path: Path) -> None:
    store = Store.open(load_settings())
    fill(store)  # 400 conversations, ~8 MB as JSON
    store.close()
    out = tmp_path / "all.json"

    def export() -> None:
        result = CliRunner().invoke(main, ["history", "export", "--all", "-o", str(out)])
        assert result.exit_code == 0, result.output

    peak = _peak_while(export)
    size = out.stat().st_size
    assert size > 8_000_000
    assert peak < size / 4, f"peak {peak / 1e6:.1f} MB for an export of {size / 1e6:.1f} MB"
    assert len(json.loads(out.read_text())["conversations"]) == 400


@pytest.mark.asyncio
async def test_the_api_export_is_streamed_in_pieces_never_held_whole(
    fake_daemon: InProcessDaemon,
) -> None:
    """Driven at the ASGI level, so that no client buffers the body for the measure."""
    fill(fake_daemon.services.store)  # type: ignore[arg-type]
    app = fake_daemon.asgi
    bodies: list[int] = []
    total = 0

    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays: no disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal total
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        elif message["type"] == "http.response.body":
            bodies.append(len(message.get("body", b"")))
            total += len(message.get("body", b""))

    scope = {"type": "http", "method": "GET", "path": "/api/export", "raw_path": b"/api/export",
             "query_string": b"", "headers": [(b"host", b"assistant")], "http_version": "1.1",
             "scheme": "http", "server": ("/tmp/assistant.sock", None), "client": None,
             "root_path": ""}
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        await app(scope, receive, send)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total > 8_000_000
    assert len(bodies) > 20  # a piece per conversation, not one body
    assert max(bodies) < 100_000
    assert peak < total / 4, f"peak {peak / 1e6:.1f} MB for an export of {total / 1e6:.1f} MB"

    # An unknown id is still a 404 in our error shape, before any byte of an export.
    async with fake_daemon.http() as http:
        missing = await http.get("/api/conversations/nope/export")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
