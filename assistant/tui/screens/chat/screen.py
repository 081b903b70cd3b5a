"""The chat screen: conversation list, transcript, prompt and status bar, and its actions.

It is built in layers, one module each: :mod:`.conversation` (layout, daemon connection, the
open conversation), :mod:`.turns` (sending turns, streaming replies, regenerating, re-routing
and branching them), :mod:`.documents` (documents for qa), and this one: the keys, the slash
commands the UI handles itself, and the actions on conversations.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.binding import BindingType

from assistant.errors import AssistantError
from assistant.tui import keys
from assistant.tui.api import ModelEntry
from assistant.tui.messages import (
    ConversationChosen,
    DaemonFailed,
    PromptSubmitted,
    SummaryToggled,
)
from assistant.tui.screens.chat.documents import DocumentsScreen
from assistant.tui.widgets.prompt import PromptInput
from assistant.tui.widgets.sidebar import ConversationList, Sidebar
from assistant.tui.widgets.status import StatusBar
from assistant.tui.widgets.transcript import SummaryView, Transcript, last_code_block


class ChatScreen(DocumentsScreen):
    BINDINGS: ClassVar[list[BindingType]] = list(keys.bindings())

    async def on_prompt_submitted(self, message: PromptSubmitted) -> None:
        text = message.text
        if text.startswith("/") and await self._local_command(text):
            return
        if not self.connected:
            self.app.notify("The daemon is still starting; try again in a moment.",
                            severity="warning")
            return
        if self.streaming is not None:
            self.app.notify("A reply is still being written; Esc stops it.", severity="warning")
            return
        await self._start_turn(text, lambda **f: self.api.stream_turn(text, **f))

    def on_conversation_chosen(self, message: ConversationChosen) -> None:
        if self.streaming is not None:
            self.action_cancel()
        self.load_conversation(message.conversation_id, message.message_id)
        self.query_one(PromptInput).focus()

    # -- slash commands the UI handles itself --------------------------------------------------

    async def _local_command(self, text: str) -> bool:
        name, _, rest = text[1:].partition(" ")
        rest = rest.strip()
        handlers: dict[str, Callable[[], Any]] = {
            "new": self.action_new_conversation,
            "help": self.action_help,
            "docs": self.action_documents,
            "search": lambda: self.action_search(rest),
            "rename": lambda: self.action_rename(rest or None),
            "export": lambda: self.action_export("json" if rest == "json" else "md"),
            "model": lambda: self.action_switch_model(rest or None),
        }
        handler = handlers.get(name.lower())
        if handler is None:
            return False
        result = handler()
        if hasattr(result, "__await__"):
            await result
        return True

    # -- actions -------------------------------------------------------------------------------

    def action_help(self) -> None:
        from assistant.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(self.assistant_app.keys))

    async def action_new_conversation(self) -> None:
        if self.streaming is not None:
            self.action_cancel()
        self.conversation_id = None
        self.detail = None
        self.last_route = None
        await self.query_one(Transcript).show([])
        self.query_one(StatusBar).set(skill="", method="", score=None, tokens_per_s=None,
                                      context_used=0)
        self.query_one(Sidebar).current = None
        self.query_one(PromptInput).focus()

    def _need_conversation(self) -> str | None:
        if self.conversation_id is None:
            self.app.notify("No conversation yet: send a message first.", severity="warning")
        return self.conversation_id

    def action_rename(self, title: str | None = None) -> None:
        conversation_id = self._need_conversation()
        if conversation_id is None:
            return
        if title:
            self.patch(conversation_id, "Renamed.", title=title)
            return
        from assistant.tui.screens.dialogs import AskScreen

        current = self.detail.title if self.detail else ""

        def done(answer: str | None) -> None:
            if answer:
                self.patch(conversation_id, "Renamed.", title=answer)

        self.app.push_screen(AskScreen("New title:", current), done)

    def action_pin(self) -> None:
        conversation_id = self._need_conversation()
        if conversation_id is None:
            return
        pinned = not (self.detail.pinned if self.detail else False)
        self.patch(conversation_id, "Pinned." if pinned else "Unpinned.", pinned=pinned)

    def action_archive(self) -> None:
        conversation_id = self._need_conversation()
        if conversation_id is None:
            return
        self.patch(conversation_id, "Archived.", new=True, archived=True)

    def action_delete(self) -> None:
        conversation_id = self._need_conversation()
        if conversation_id is None:
            return
        from assistant.tui.screens.dialogs import ConfirmScreen

        title = self.detail.title if self.detail else conversation_id

        def done(yes: bool | None) -> None:
            if yes:
                self.remove_conversation(conversation_id)

        self.app.push_screen(ConfirmScreen(f"Delete “{title}” and all its messages?"), done)

    @work(thread=True, group="edit")
    def patch(self, conversation_id: str, said: str, new: bool = False, **fields: Any) -> None:
        try:
            self.api.patch(conversation_id, **fields)
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))
            return
        self.app.call_from_thread(self._after_change_soon, conversation_id, said, new)

    @work(thread=True, group="edit")
    def remove_conversation(self, conversation_id: str) -> None:
        try:
            self.api.delete(conversation_id)
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))
            return
        self.app.call_from_thread(self._after_change_soon, conversation_id, "Deleted.", True)

    def _after_change_soon(self, conversation_id: str, said: str, new: bool) -> None:
        self.call_later(self._after_change, conversation_id, said, new)

    async def _after_change(self, conversation_id: str, said: str, new: bool) -> None:
        self.app.notify(said, timeout=3)
        if new and self.conversation_id == conversation_id:
            await self.action_new_conversation()
        elif self.conversation_id == conversation_id:
            self.load_conversation(conversation_id)
        self.refresh_conversations()

    def action_search(self, query: str = "") -> None:
        from assistant.tui.screens.search import SearchScreen

        def done(hit: tuple[str, str] | None) -> None:
            if hit is not None:
                self.post_message(ConversationChosen(hit[0], hit[1]))

        self.app.push_screen(SearchScreen(self.api, query), done)

    def action_focus_sidebar(self) -> None:
        box = self.query_one(ConversationList)
        if box.option_count:
            box.focus()
        else:
            self.query_one("#filter").focus()

    def action_focus_prompt(self) -> None:
        self.query_one(PromptInput).focus()

    def action_export(self, fmt: str) -> None:
        conversation_id = self._need_conversation()
        if conversation_id is not None:
            self.export(conversation_id, fmt)

    @work(thread=True, group="export")
    def export(self, conversation_id: str, fmt: str) -> None:
        try:
            path = self.api.export(conversation_id, fmt, Path.cwd())
        except (AssistantError, OSError) as exc:
            message = exc.message if isinstance(exc, AssistantError) else str(exc)
            self.post_message(DaemonFailed(f"export failed: {message}"))
            return
        self.app.call_from_thread(self.app.notify, f"Exported to {path}", title="export",
                                  markup=False)

    def action_copy_message(self) -> None:
        view = self.query_one(Transcript).last_reply()
        if view is None or not view.content:
            self.app.notify("No reply to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(view.content)
        self.app.notify(f"Copied the last reply ({len(view.content)} characters).", timeout=3)

    def action_copy_code(self) -> None:
        for view in reversed(self.query_one(Transcript).views()):
            code = last_code_block(view.content)
            if code is not None:
                self.app.copy_to_clipboard(code)
                self.app.notify(f"Copied a code block ({len(code.splitlines())} lines).",
                                timeout=3)
                return
        self.app.notify("No code block in this conversation.", severity="warning")

    def action_branches(self) -> None:
        reply = self.query_one(Transcript).last_reply()
        if self.detail is None or reply is None or reply.message_id not in self.detail.messages:
            self.app.notify("No turn to branch yet.", severity="warning")
            return
        siblings = self.detail.siblings(reply.message_id)
        mine = self.query_one(Transcript).last_user()
        if len(siblings) < 2 and mine is not None and mine.message_id in self.detail.messages:
            siblings = self.detail.siblings(mine.message_id)
        if len(siblings) < 2:
            self.app.notify("This turn has one branch.", severity="information")
            return
        from assistant.tui.screens.branches import BranchScreen

        conversation_id = self.detail.id

        def done(message_id: str | None) -> None:
            if message_id:
                self.patch(conversation_id, "Switched branch.", active_message_id=message_id)

        current = reply.message_id if siblings[0].role == "assistant" else str(mine and
                                                                             mine.message_id)
        self.app.push_screen(BranchScreen(siblings, current), done)

    def action_toggle_summary(self) -> None:
        """Undo the summary in force; with none in force, redo the latest undone one."""
        conversation_id = self._need_conversation()
        if conversation_id is None:
            return
        if self.streaming is not None:
            self.app.notify("A reply is still being written; Esc stops it.", severity="warning")
            return
        # The blocks shown, not self.detail: a summary event's block is there before the
        # store's copy of the conversation is loaded again.
        summaries = [(v.message_id, v.status) for v in self.query_one(Transcript).views()
                     if isinstance(v, SummaryView) and v.message_id]
        if not summaries:
            self.app.notify("This conversation has no summary: the daemon writes one when it "
                            "outgrows the model's context.", severity="warning")
            return
        # In force means what the store gives the model: a complete summary, not undone.
        in_force = [i for i, status in summaries if status == "complete"]
        target = in_force[-1] if in_force else summaries[-1][0]
        self.toggle_summary(conversation_id, target, undone=bool(in_force))

    @work(thread=True, group="edit")
    def toggle_summary(self, conversation_id: str, message_id: str, undone: bool) -> None:
        try:
            stored = self.api.set_summary_undone(message_id, undone)
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))
            return
        self.post_message(SummaryToggled(conversation_id, stored))

    def on_summary_toggled(self, message: SummaryToggled) -> None:
        stored = message.message
        for view in self.query_one(Transcript).views():
            if view.message_id == stored.id:
                view.set_header(status=stored.status)
        if stored.status == "undone":
            said = "Summary undone: the model is given the turns it stood for again."
        else:
            said = "Summary back in force: the model is given it instead of the turns above it."
        self.app.notify(said, timeout=4)
        if self.conversation_id == message.conversation_id and self.streaming is None:
            self.load_conversation(message.conversation_id)

    def action_switch_model(self, name: str | None = None) -> None:
        from assistant.tui.screens.models import ModelScreen

        def done(entry: ModelEntry | None) -> None:
            if entry is not None:
                self.model = entry.name
                self.query_one(StatusBar).set(model=entry.name, context_size=entry.context)
                self.app.notify(f"Now chatting with {entry.name}.", timeout=3)

        self.app.push_screen(ModelScreen(self.api, self.model, preselect=name), done)
