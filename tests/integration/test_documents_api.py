"""Documents for qa through the daemon: ingestion streams progress, each file whole or not at
all, listed and removed over the API; the client used by the TUI drives it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assistant.client import Client
from assistant.config import load_settings
from assistant.errors import RequestError
from assistant.wire import INGEST_EVENTS
from tests.integration.conftest import RunningDaemon

pytestmark = pytest.mark.integration

TEXT = " ".join(f"Section {i}. The observatory on hill {i} opened in {1900 + i} and its "
                f"telescope has a mirror of {i + 10} centimetres." for i in range(120))


def test_documents_are_ingested_with_progress_listed_and_removed(
    daemon: RunningDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "observatories.md").write_text("# Observatories\n\n" + TEXT)
    (folder / "short.txt").write_text("The tide tables are pinned by the door.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    for key, value in daemon.env.items():
        if key.startswith("ASSISTANT_"):
            monkeypatch.setenv(key, value)
    with Client(load_settings()) as client:
        events = list(client.add_documents([folder]))
        kinds = [e["type"] for e in events]
        assert kinds[-1] == "done" and "progress" in kinds
        assert events[-1] == {"type": "done", "added": 2, "updated": 0,
                              "unchanged": 0, "failed": 1}
        statuses = {Path(e["path"]).name: e for e in events if e["type"] == "document"}
        assert statuses["observatories.md"]["status"] == "added"
        assert statuses["observatories.md"]["chunks"] > 1
        assert statuses["broken.pdf"]["status"] == "failed"
        assert statuses["broken.pdf"]["message"]
        progress = [e for e in events if e["type"] == "progress"]
        assert all(0 < e["done"] <= e["total"] for e in progress)

        again = list(client.add_documents([folder / "short.txt"]))
        assert again[-1] == {"type": "done", "added": 0, "updated": 0,
                             "unchanged": 1, "failed": 0}

        listed = client.get("/api/documents")["documents"]
        assert sorted(Path(d["path"]).name for d in listed) == ["observatories.md", "short.txt"]
        gone = next(d for d in listed if d["path"].endswith("short.txt"))
        assert client.http.delete(f"/api/documents/{gone['id']}").status_code == 204
        assert client.http.delete(f"/api/documents/{gone['id']}").status_code == 404
        assert len(client.get("/api/documents")["documents"]) == 1

        with pytest.raises(RequestError) as info:
            list(client.stream("/api/documents", {"paths": ["relative/notes"]},
                               INGEST_EVENTS))
        assert "absolute" in info.value.message

        # a FIFO named like a text file, a symlink loop, an over-long name: each file fails
        # on its own, the daemon stays responsive, the batch ends with its counts
        odd = tmp_path / "odd"
        odd.mkdir()
        os.mkfifo(odd / "pipe.txt")
        (odd / "loop.md").symlink_to(odd / "loop.md")
        events = list(client.add_documents([odd / "pipe.txt", odd / "loop.md",
                                            odd / ("x" * 300 + ".txt")]))
        assert events[-1] == {"type": "done", "added": 0, "updated": 0,
                              "unchanged": 0, "failed": 3}
        assert client.health() is not None
