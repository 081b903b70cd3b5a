"""Documents for qa: Ctrl+D asks for paths, a worker streams them to the daemon
(``POST /api/documents``) with its progress in the status bar, and the outcome is told in
notifications: the files added, updated or unchanged in one, each file the daemon could not add
in one of its own, with its reason.
"""

from __future__ import annotations

import glob
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from textual.message import Message
from textual.screen import Screen

from assistant.errors import AssistantError
from assistant.tui.api import TuiApi
from assistant.tui.messages import DaemonFailed, DocumentsAdded, DocumentsProgressed
from assistant.wire import Document

# A folder of many files must not bury the screen in notifications.
MAX_FAILURE_NOTICES = 5
MAX_NAMES = 8


class DocumentsAdder:
    """Asks for paths, adds them through the daemon and tells what became of each file.
    ``screen`` shows the dialog and the notifications, runs the worker and is sent its
    :class:`DocumentsProgressed`, :class:`DaemonFailed` and :class:`DocumentsAdded`."""

    def __init__(self, screen: Screen[None], api: TuiApi) -> None:
        self._screen = screen
        self._api = api

    def ask(self) -> None:
        from assistant.tui.screens.dialogs import AskScreen

        def done(answer: str | None) -> None:
            if answer:
                self.add(document_paths(answer))

        self._screen.app.push_screen(
            AskScreen("Documents to add for qa (paths, space-separated):",
                      placeholder="~/notes/*.md"), done)

    def add(self, paths: list[Path]) -> None:
        self._screen.run_worker(partial(add_documents, self._screen.post_message, self._api,
                                        paths), name="documents", group="documents",
                                thread=True)

    def tell(self, outcomes: list[Document]) -> None:
        """The notifications for the ``document`` events of one request."""
        said = report(outcomes)
        app = self._screen.app
        for failure in said.failures:
            app.notify(failure, title="document not added", severity="error", timeout=8,
                       markup=False)
        if said.more_failed:
            app.notify(f"{said.more_failed} more files were not added.\n"
                       "`assistant docs add PATH` lists every one.",
                       title="documents not added", severity="error", timeout=8, markup=False)
        if said.stored:
            app.notify("Documents for qa: " + ", ".join(said.stored) + ".", title="documents",
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


def add_documents(post: Callable[[Message], object], api: TuiApi, paths: list[Path]) -> None:
    """A worker: send ``paths`` to the daemon, its progress and outcomes as messages."""
    outcomes: list[Document] = []
    try:
        for event in api.add_documents(paths):
            if event["type"] == "progress":
                post(DocumentsProgressed(event))
            elif event["type"] == "document":
                outcomes.append(event)
            elif event["type"] == "error":
                post(DaemonFailed(f"adding documents failed: {event['message']}"))
                break
    except AssistantError as exc:
        post(DaemonFailed(exc.message, exc.hint))
    finally:
        post(DocumentsAdded(outcomes))


@dataclass
class DocumentsReport:
    """What became of the files, as the notifications say it."""

    stored: list[str] = field(default_factory=list)  # "notes.md (3 chunks)", "a.md (unchanged)"
    failures: list[str] = field(default_factory=list)  # one notice each, at most MAX_...
    more_failed: int = 0  # failed files beyond those named


def report(outcomes: list[Document]) -> DocumentsReport:
    said = DocumentsReport()
    failed = 0
    for event in outcomes:
        path, reason = event["path"], event["message"]
        if event["status"] == "failed":
            failed += 1
            if failed <= MAX_FAILURE_NOTICES:
                said.failures.append(
                    reason if path and path in reason else f"{path}: {reason or 'failed'}")
        elif event["status"] in ("added", "updated"):
            chunks = event["chunks"]
            again = ", updated" if event["status"] == "updated" else ""
            said.stored.append(
                f"{Path(path).name} ({chunks} chunk{'' if chunks == 1 else 's'}{again})")
        else:
            said.stored.append(f"{Path(path).name} (unchanged)")
    said.more_failed = max(0, failed - MAX_FAILURE_NOTICES)
    if len(said.stored) > MAX_NAMES:
        said.stored[MAX_NAMES - 1:] = [f"{len(said.stored) - MAX_NAMES + 1} more"]
    return said
