"""The daemon's conversations as the chat screen asks for them: the list, one conversation,
and changes (rename, pin, archive, delete, switch branch, undo or redo a summary, export).
Each call runs in a thread worker that reports back by message; a change asks the user first
where it needs to (a title, a yes, a branch).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.screen import Screen

from assistant.errors import AssistantError
from assistant.tui.api import ConversationDetail, TuiApi
from assistant.tui.messages import (
    ConversationEdited,
    ConversationLoaded,
    ConversationsLoaded,
    DaemonFailed,
    SummaryToggled,
)


class StoredConversations:
    """``screen`` shows the dialogs, runs the workers and is sent their messages:
    :class:`ConversationsLoaded`, :class:`ConversationLoaded`, :class:`ConversationEdited`,
    :class:`SummaryToggled`, or :class:`DaemonFailed` when the daemon refuses."""

    def __init__(self, screen: Screen[None], api: TuiApi) -> None:
        self._screen = screen
        self._api = api

    def refresh_list(self) -> None:
        """Ask for the list again: when the daemon connects, when a turn ends (a new
        conversation, another order) and after a change; never only to show another one."""
        def run() -> None:
            self._screen.post_message(ConversationsLoaded(self._api.conversations()))

        self._run(run, group="list", exclusive=True)

    def load(self, conversation_id: str, message_id: str | None = None) -> None:
        """Load the conversation (to show it at ``message_id`` if given)."""
        def run() -> None:
            detail = self._api.conversation(conversation_id)
            self._screen.post_message(ConversationLoaded(detail, message_id))

        self._run(run, group="load", exclusive=True)

    def rename(self, conversation_id: str, current: str, title: str | None = None) -> None:
        """Rename to ``title``; without one, ask for it (``current`` filled in)."""
        if title:
            self.patch(conversation_id, "Renamed.", title=title)
            return
        from assistant.tui.screens.dialogs import AskScreen

        def done(answer: str | None) -> None:
            if answer:
                self.patch(conversation_id, "Renamed.", title=answer)

        self._screen.app.push_screen(AskScreen("New title:", current), done)

    def delete(self, conversation_id: str, title: str) -> None:
        """Delete the conversation and all its messages, once the user says yes."""
        from assistant.tui.screens.dialogs import ConfirmScreen

        def done(yes: bool | None) -> None:
            if yes:
                self._run(lambda: self._deleted(conversation_id))

        self._screen.app.push_screen(ConfirmScreen(f"Delete “{title}” and all its messages?"),
                                     done)

    def _deleted(self, conversation_id: str) -> None:
        self._api.delete(conversation_id)
        self._screen.post_message(ConversationEdited(conversation_id, "Deleted.", True))

    def switch_branch(self, detail: ConversationDetail | None, reply_id: str | None,
                      question_id: str | None) -> None:
        """Let the user pick among the branches of the last turn: the replies beside
        ``reply_id`` or, with one reply, the edits beside ``question_id``."""
        notify = self._screen.app.notify
        if detail is None or reply_id is None or reply_id not in detail.messages:
            notify("No turn to branch yet.", severity="warning")
            return
        siblings, current = detail.siblings(reply_id), reply_id
        if len(siblings) < 2 and question_id is not None and question_id in detail.messages:
            siblings, current = detail.siblings(question_id), question_id
        if len(siblings) < 2:
            notify("This turn has one branch.", severity="information")
            return
        from assistant.tui.screens.branches import BranchScreen

        def done(message_id: str | None) -> None:
            if message_id:
                self.patch(detail.id, "Switched branch.", active_message_id=message_id)

        self._screen.app.push_screen(BranchScreen(siblings, current), done)

    def patch(self, conversation_id: str, said: str, *, closes: bool = False,
              **fields: Any) -> None:
        """Change ``fields`` of the conversation (title, pinned, archived, active_message_id);
        ``closes``: it leaves the list."""
        def run() -> None:
            self._api.patch(conversation_id, **fields)
            self._screen.post_message(ConversationEdited(conversation_id, said, closes))

        self._run(run)

    def toggle_summary(self, conversation_id: str, message_id: str, undone: bool) -> None:
        """Take a compaction summary out of the model's context (``undone``) or put it back."""
        def run() -> None:
            stored = self._api.set_summary_undone(message_id, undone)
            self._screen.post_message(SummaryToggled(conversation_id, stored))

        self._run(run)

    def export(self, conversation_id: str, fmt: str, directory: Path) -> None:
        """Write the conversation to ``directory`` as ``fmt`` (md, json) and say where."""
        app = self._screen.app

        def run() -> None:
            try:
                path = self._api.export(conversation_id, fmt, directory)
            except (AssistantError, OSError) as exc:
                message = exc.message if isinstance(exc, AssistantError) else str(exc)
                self._screen.post_message(DaemonFailed(f"export failed: {message}"))
                return
            app.call_from_thread(app.notify, f"Exported to {path}", title="export",
                                 markup=False)

        self._run(run, group="export")

    def _run(self, work: Callable[[], None], group: str = "edit",
             exclusive: bool = False) -> None:
        def reported() -> None:
            try:
                work()
            except AssistantError as exc:
                self._screen.post_message(DaemonFailed(exc.message, exc.hint))

        self._screen.run_worker(reported, name=group, group=group, exclusive=exclusive,
                                thread=True)
