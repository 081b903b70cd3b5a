"""The third layer of the chat screen: documents for qa. Ctrl+D asks for paths, a worker
streams them to the daemon (``POST /api/documents``) with its progress in the status bar, and
the outcome is told in notifications: the files added, updated or unchanged in one, each file
the daemon could not add in one of its own, with its reason.
"""

from __future__ import annotations

import glob
import os
import shlex
from pathlib import Path
from typing import Any

from textual import work

from assistant.errors import AssistantError
from assistant.tui.messages import DaemonFailed, DocumentsAdded, TurnProgressed
from assistant.tui.screens.chat.turns import TurnScreen
from assistant.tui.widgets.status import StatusBar

# A folder of many files must not bury the screen in notifications.
MAX_FAILURE_NOTICES = 5
MAX_NAMES = 8


class DocumentsScreen(TurnScreen):
    """Adds documents for qa through the daemon and says what became of each file."""

    def action_documents(self) -> None:
        from assistant.tui.screens.dialogs import AskScreen

        def done(answer: str | None) -> None:
            if answer:
                self.add_documents(document_paths(answer))

        self.app.push_screen(AskScreen("Documents to add for qa (paths, space-separated):",
                                       placeholder="~/notes/*.md"), done)

    @work(thread=True, group="documents")
    def add_documents(self, paths: list[Path]) -> None:
        outcomes: list[dict[str, Any]] = []
        try:
            for event in self.api.add_documents(paths):
                kind = event.get("type")
                if kind == "progress":
                    self.post_message(TurnProgressed(self.turn, event))
                elif kind == "document":
                    outcomes.append(event)
                elif kind == "error":
                    self.post_message(DaemonFailed(
                        f"adding documents failed: {event.get('message')}"))
                    break
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))
        finally:
            self.post_message(DocumentsAdded(outcomes))

    def on_documents_added(self, message: DocumentsAdded) -> None:
        if self.streaming is None:
            self.query_one(StatusBar).set(state="ready")
        stored: list[str] = []
        failed = 0
        for event in message.outcomes:
            path, reason = str(event.get("path") or ""), str(event.get("message") or "")
            if event.get("status") == "failed":
                failed += 1
                if failed <= MAX_FAILURE_NOTICES:
                    said = reason if path and path in reason else f"{path}: {reason or 'failed'}"
                    self.notify_error(said, title="document not added")
            elif event.get("status") in ("added", "updated"):
                chunks = event.get("chunks", 0)
                again = ", updated" if event.get("status") == "updated" else ""
                stored.append(
                    f"{Path(path).name} ({chunks} chunk{'' if chunks == 1 else 's'}{again})")
            else:
                stored.append(f"{Path(path).name} (unchanged)")
        if failed > MAX_FAILURE_NOTICES:
            self.notify_error(f"{failed - MAX_FAILURE_NOTICES} more files were not added.",
                              "`assistant docs add PATH` lists every one.",
                              title="documents not added")
        if len(stored) > MAX_NAMES:
            stored[MAX_NAMES - 1:] = [f"{len(stored) - MAX_NAMES + 1} more"]
        if stored:
            self.app.notify("Documents for qa: " + ", ".join(stored) + ".", title="documents",
                            timeout=5, markup=False)


def document_paths(answer: str) -> list[Path]:
    """The paths typed in the documents dialog: shell-quoted words, ``~`` and globs expanded
    (a pattern that matches nothing is passed on, for the daemon to say so)."""
    try:
        words = shlex.split(answer)
    except ValueError:  # an unclosed quote: take the words as they are
        words = answer.split()
    paths: list[Path] = []
    for word in words:
        expanded = os.path.expanduser(word)
        # A path that exists is taken as written ("notes[2024].md"), only others as patterns.
        matches = sorted(glob.glob(expanded)) if not os.path.exists(expanded) and any(
            c in expanded for c in "*?[") else []
        paths += [Path(m) for m in matches] or [Path(expanded)]
    return paths
