"""The chat screen: the conversation list, the transcript, the message box and the status bar.

The screen lays its widgets out, maps keys and slash commands to actions, and routes messages
between the widgets and the objects that do the work, each in its own module:
:class:`.TurnStream` (the turn being answered: its worker, its pending text, stopping it),
:class:`.StoredConversations` (listing, loading and changing conversations) and
:class:`.DocumentsAdder` (documents for qa). Widgets keep their own state (the list, the views
of the messages, the status line, the completions); the screen keeps what routing needs: the
open conversation (its id, the store's copy, its last route), the chat model and the skills.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen

from assistant.errors import AssistantError
from assistant.tui import keys
from assistant.tui.api import ConversationDetail, ModelEntry, SkillEntry, TuiApi
from assistant.tui.messages import (
    ConversationChosen,
    ConversationEdited,
    ConversationLoaded,
    ConversationsLoaded,
    DaemonConnected,
    DaemonFailed,
    DocumentsAdded,
    DocumentsProgressed,
    PromptSubmitted,
    SummaryToggled,
    TurnEnded,
    TurnFailed,
    TurnFinished,
    TurnProgressed,
    TurnRouted,
    TurnSummarized,
)
from assistant.tui.screens.chat.conversations import StoredConversations
from assistant.tui.screens.chat.documents import DocumentsAdder
from assistant.tui.screens.chat.turn_stream import OpenStream, TurnStream
from assistant.tui.widgets.prompt import Completions, PromptInput
from assistant.tui.widgets.sidebar import ConversationList, Sidebar
from assistant.tui.widgets.status import StatusBar
from assistant.tui.widgets.transcript import MessageView, SummaryView, Transcript
from assistant.wire import TurnEvent

BUSY = "A reply is still being written; Esc stops it."


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = list(keys.bindings())

    def __init__(self, api: TuiApi, conversation_id: str | None = None, *,
                 max_tokens: int | None = None, keymap: dict[str, str] | None = None) -> None:
        super().__init__()
        self.api = api
        self.max_tokens = max_tokens  # longest reply asked for; None: the model's limit
        self.keymap = keymap or {}  # the user's [tui.keys], for the help screen
        self.conversation_id = conversation_id  # None: a new conversation, until its first turn
        self.detail: ConversationDetail | None = None  # the store's copy, last loaded
        # The last turn's route: its event, or the stored reply's (the same fields).
        self.last_route: Mapping[str, Any] | None = None
        self.connected = False
        self.chat_model = api.settings.models.default
        self.model_picked = False  # chosen with /model or ctrl+l: then it answers every turn
        self.skills: list[SkillEntry] = []
        self.turns = TurnStream(self)
        self.stored = StoredConversations(self, api)
        self.documents = DocumentsAdder(self, api)

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield Sidebar(id="sidebar")
            with Vertical(id="chat"):
                yield Transcript(id="transcript")
                yield Completions(id="completions")
                yield PromptInput(id="prompt")
        yield StatusBar(id="status")

    async def on_mount(self) -> None:
        self.query_one(Completions).display = False
        await self.query_one(Transcript).show([])
        self.query_one(PromptInput).focus()
        self.query_one(StatusBar).set(model=self.chat_model)
        self.connect()

    def notify_error(self, reason: str, hint: str | None = None, title: str = "error") -> None:
        self.app.notify(reason + (f"\n{hint}" if hint else ""), title=title,
                        severity="error", timeout=8, markup=False)

    # -- the daemon ----------------------------------------------------------------------------

    @work(thread=True, group="connect")
    def connect(self) -> None:
        try:
            health = self.api.connect()
            sizes = {m.name: m.context for m in self.api.models()}
            skills = self.api.skills()
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))
            return
        problems: list[str] = []
        if health.get("status") == "degraded":  # best effort: a degraded daemon still serves
            with contextlib.suppress(AssistantError):
                problems = self.api.problems()
        self.post_message(DaemonConnected(health, sizes, skills, problems))

    def on_daemon_connected(self, message: DaemonConnected) -> None:
        self.connected = True
        self.skills = message.skills
        self.query_one(PromptInput).offer_skills(message.skills)
        state = "ready" if message.health.get("status") == "ready" else str(
            message.health.get("status"))
        self.query_one(StatusBar).set(state=state,
                                      context_size=message.context_sizes.get(self.chat_model))
        if message.problems:  # plugin and exception text: never markup
            self.app.notify("\n".join(message.problems), title="the daemon is degraded",
                            severity="warning", timeout=15, markup=False)
        self.stored.refresh_list()
        if self.conversation_id is not None:
            self.stored.load(self.conversation_id)

    def on_daemon_failed(self, message: DaemonFailed) -> None:
        self.query_one(StatusBar).set(state="no daemon")
        self.notify_error(message.reason, message.hint, title="daemon")

    # -- conversations -------------------------------------------------------------------------

    def on_conversations_loaded(self, message: ConversationsLoaded) -> None:
        self.query_one(Sidebar).show(message.conversations, self.conversation_id)

    async def on_conversation_loaded(self, message: ConversationLoaded) -> None:
        detail = message.detail
        self.detail = detail
        self.conversation_id = detail.id
        path = detail.path()
        transcript = self.query_one(Transcript)
        await transcript.show(path, detail.branch_positions())
        replies = [m for m in path if m.role == "assistant"]
        self.last_route = replies[-1].route if replies else None
        self.query_one(StatusBar).show_reply(replies[-1] if replies else None)
        if message.focus_message_id:
            transcript.focus_message(message.focus_message_id)
        self.query_one(Sidebar).select(detail.id)

    def on_conversation_chosen(self, message: ConversationChosen) -> None:
        self.action_cancel()
        self.stored.load(message.conversation_id, message.message_id)
        self.query_one(PromptInput).focus()

    async def on_conversation_edited(self, message: ConversationEdited) -> None:
        self.app.notify(message.said, timeout=3)
        if self.conversation_id == message.conversation_id:
            if message.closed:
                await self.action_new_conversation()
            else:
                self.stored.load(message.conversation_id)
        self.stored.refresh_list()

    def on_summary_toggled(self, message: SummaryToggled) -> None:
        summary = message.summary
        for view in self.query_one(Transcript).views():
            if view.message_id == summary.id:
                view.set_header(status=summary.status)
        if summary.status == "undone":
            said = "Summary undone: the model is given the turns it stood for again."
        else:
            said = "Summary back in force: the model is given it instead of the turns above it."
        self.app.notify(said, timeout=4)
        if self.conversation_id == message.conversation_id and not self.turns.running:
            self.stored.load(message.conversation_id)
        self.stored.refresh_list()  # the store moved the conversation up: it changed

    # -- turns ---------------------------------------------------------------------------------

    async def on_prompt_submitted(self, message: PromptSubmitted) -> None:
        text = message.text
        if text.startswith("/") and await self._local_command(text):
            return
        if not self.connected:
            self.app.notify("The daemon is still starting; try again in a moment.",
                            severity="warning")
            return
        if self.turns.running:
            self.app.notify(BUSY, severity="warning")
            return
        await self._start_turn(text, partial(self.api.stream_turn, text))

    async def _start_turn(self, text: str | None, open_stream: OpenStream) -> None:
        """Show ``text`` (None: answer the last question again) and stream the reply."""
        transcript = self.query_one(Transcript)
        question = (await transcript.add(MessageView("user", text)) if text is not None
                    else transcript.last_user())
        reply = await transcript.add(MessageView("assistant", status="streaming"))
        self.query_one(StatusBar).set(state="generating…")
        # The chat model answers chat and any skill without a model of its own; once the user
        # picked it, every turn (docs/tui.md).
        fields: dict[str, Any] = {"conversation_id": self.conversation_id,
                                  "chat_model": self.chat_model}
        if self.model_picked:
            fields["model"] = self.chat_model
        if self.max_tokens:
            fields["max_tokens"] = self.max_tokens
        self.turns.start(question, reply, open_stream, fields)

    def on_turn_routed(self, message: TurnRouted) -> None:
        if not self.turns.routed(message.number, message.event):
            return
        event = self.last_route = message.event
        self.query_one(StatusBar).show_route(event)
        # A new conversation joins the sidebar when the turn ends: asking the daemon for the
        # list now would take CPU from the reply being decoded.
        new = event.get("conversation_id")
        if new and new != self.conversation_id:
            self.conversation_id = new

    async def on_turn_summarized(self, message: TurnSummarized) -> None:
        if self.turns.reply_to(message.number) is None:
            return
        event = message.event
        view = SummaryView(event["text"], message_id=event["message_id"])
        await self.query_one(Transcript).add_summary(view, event["covers"], self.turns.question)

    def on_turn_progressed(self, message: TurnProgressed) -> None:
        event = message.event
        if event["type"] == "notice":
            self.app.notify(event["message"], severity="warning", markup=False)
            return
        if event["type"] == "guard":  # what a guard did is said, never done silently
            quiet = event["action"] in ("rewrite", "redact")
            self.app.notify(event["reason"], title=f"guard '{event['guard']}': {event['action']}",
                            severity="information" if quiet else "warning", markup=False)
            return
        self.query_one(StatusBar).show_progress(event)

    def on_turn_finished(self, message: TurnFinished) -> None:
        status = self.turns.finished(message.number, message.event, message.citations)
        if status is None:
            return
        new = message.event.get("conversation_id")  # a blocked turn has no route event
        if new and new != self.conversation_id:
            self.conversation_id = new
        if status == "cancelled" and not self.turns.cancelled:
            self.app.notify("The daemon stopped the reply before it was complete "
                            "(it took longer than plugins.skill_timeout?).",
                            title="reply cancelled", severity="warning", timeout=8)
        self.query_one(StatusBar).show_done(message.event)

    def on_turn_failed(self, message: TurnFailed) -> None:
        self.turns.failed(message.number)
        self.notify_error(message.reason, message.hint, title="reply failed")

    async def on_turn_ended(self, message: TurnEnded) -> None:
        if await self.turns.end(message.number) is None:
            return
        self.query_one(StatusBar).set(state="ready")
        self.stored.refresh_list()
        if self.conversation_id is not None:
            # The store's copy has ids, branches and the final status.
            self.stored.load(self.conversation_id)

    def action_cancel(self) -> None:
        if self.turns.cancel() is not None:
            self.app.notify("Stopped the reply.", timeout=2)

    async def action_regenerate(self) -> None:
        await self._answer_again(None)

    async def _answer_again(self, skill: str | None) -> None:
        """A new reply to the last question, beside the last reply: routed afresh, or by
        ``skill`` through the reroute endpoint, as `assistant reroute` does, so that the
        router learns from it (the daemon answers in the reply's conversation and model)."""
        transcript = self.query_one(Transcript)
        reply, question = transcript.last_reply(), transcript.last_user()
        if reply is None or reply.message_id is None or question is None:
            self.app.notify("No reply to regenerate yet.", severity="warning")
            return
        if self.turns.running:
            self.app.notify(BUSY, severity="warning")
            return
        message_id, text = reply.message_id, question.content
        open_stream: OpenStream
        if skill is None:
            open_stream = partial(self.api.stream_regenerate, message_id, text)
        else:
            def open_stream(**fields: Any) -> Iterator[TurnEvent]:
                return self.api.stream_reroute(
                    message_id, skill, max_tokens=fields.get("max_tokens"),
                    model=fields.get("model"), chat_model=fields.get("chat_model"))
        await reply.remove()
        await self._start_turn(None, open_stream)

    def action_route(self) -> None:
        if self.last_route is None:
            self.app.notify("No turn yet: the route of the last turn shows here.",
                            severity="warning")
            return
        from assistant.tui.screens.route import RouteScreen

        scores = self.last_route.get("scores") or {}
        skills = sorted({s.name for s in self.skills} | set(scores))

        def done(skill: str | None) -> None:
            if skill:
                self.call_later(self._answer_again, skill)

        self.app.push_screen(RouteScreen(self.last_route, skills), done)

    def action_edit_last(self) -> None:
        question = self.query_one(Transcript).last_user()
        if question is None or question.message_id is None:
            self.app.notify("No message of yours to edit yet.", severity="warning")
            return
        from assistant.tui.screens.dialogs import AskScreen

        message_id = question.message_id

        def done(text: str | None) -> None:
            if text:
                self.call_later(self._start_turn, text,
                                partial(self.api.stream_edit, message_id, text))

        self.app.push_screen(AskScreen("Edit your message (a new branch):", question.content),
                             done)

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

    # -- actions on conversations --------------------------------------------------------------

    async def action_new_conversation(self) -> None:
        self.action_cancel()
        self.conversation_id = None
        self.detail = None
        self.last_route = None
        await self.query_one(Transcript).show([])
        self.query_one(StatusBar).show_reply(None)
        self.query_one(Sidebar).current = None
        self.query_one(PromptInput).focus()

    def _open_conversation(self) -> str | None:
        """The open conversation's id; None (and the user told so) before its first turn."""
        if self.conversation_id is None:
            self.app.notify("No conversation yet: send a message first.", severity="warning")
        return self.conversation_id

    def _title(self) -> str:
        return self.detail.title if self.detail else ""

    def action_rename(self, title: str | None = None) -> None:
        if (conversation_id := self._open_conversation()) is not None:
            self.stored.rename(conversation_id, self._title(), title)

    def action_pin(self) -> None:
        if (conversation_id := self._open_conversation()) is not None:
            pinned = not (self.detail.pinned if self.detail else False)
            self.stored.patch(conversation_id, "Pinned." if pinned else "Unpinned.",
                              pinned=pinned)

    def action_archive(self) -> None:
        if (conversation_id := self._open_conversation()) is not None:
            self.stored.patch(conversation_id, "Archived.", closes=True, archived=True)

    def action_delete(self) -> None:
        if (conversation_id := self._open_conversation()) is not None:
            self.stored.delete(conversation_id, self._title() or conversation_id)

    def action_branches(self) -> None:
        transcript = self.query_one(Transcript)
        reply, question = transcript.last_reply(), transcript.last_user()
        self.stored.switch_branch(self.detail, reply.message_id if reply else None,
                                  question.message_id if question else None)

    def action_toggle_summary(self) -> None:
        """Undo the summary in force; with none in force, redo the latest undone one."""
        if (conversation_id := self._open_conversation()) is None:
            return
        if self.turns.running:
            self.app.notify(BUSY, severity="warning")
            return
        target = self.query_one(Transcript).summary_to_toggle()
        if target is None:
            self.app.notify("This conversation has no summary: the daemon writes one when it "
                            "outgrows the model's context.", severity="warning")
            return
        self.stored.toggle_summary(conversation_id, *target)

    def action_export(self, fmt: str) -> None:
        if (conversation_id := self._open_conversation()) is not None:
            self.stored.export(conversation_id, fmt, Path.cwd())

    def action_search(self, query: str = "") -> None:
        from assistant.tui.screens.search import SearchScreen

        def done(hit: tuple[str, str] | None) -> None:
            if hit is not None:
                self.post_message(ConversationChosen(hit[0], hit[1]))

        self.app.push_screen(SearchScreen(self.api, query), done)

    # -- the rest ------------------------------------------------------------------------------

    def action_help(self) -> None:
        from assistant.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(self.keymap))

    def action_focus_sidebar(self) -> None:
        box = self.query_one(ConversationList)
        if box.option_count:
            box.focus()
        else:
            self.query_one("#filter").focus()

    def action_focus_prompt(self) -> None:
        self.query_one(PromptInput).focus()

    def action_copy_message(self) -> None:
        view = self.query_one(Transcript).last_reply()
        if view is None or not view.content:
            self.app.notify("No reply to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(view.content)
        self.app.notify(f"Copied the last reply ({len(view.content)} characters).", timeout=3)

    def action_copy_code(self) -> None:
        code = self.query_one(Transcript).last_code_block()
        if code is None:
            self.app.notify("No code block in this conversation.", severity="warning")
            return
        self.app.copy_to_clipboard(code)
        self.app.notify(f"Copied a code block ({len(code.splitlines())} lines).", timeout=3)

    def action_switch_model(self, name: str | None = None) -> None:
        from assistant.tui.screens.models import ModelScreen

        def done(entry: ModelEntry | None) -> None:
            if entry is not None:
                self.chat_model = entry.name
                self.model_picked = True
                self.query_one(StatusBar).set(model=entry.name, context_size=entry.context)
                self.app.notify(f"Now chatting with {entry.name}.", timeout=3)

        self.app.push_screen(ModelScreen(self.api, self.chat_model, preselect=name), done)

    def action_documents(self) -> None:
        self.documents.ask()

    def on_documents_progressed(self, message: DocumentsProgressed) -> None:
        self.query_one(StatusBar).show_progress(message.event)

    def on_documents_added(self, message: DocumentsAdded) -> None:
        if not self.turns.running:
            self.query_one(StatusBar).set(state="ready")
        self.documents.tell(message.outcomes)
