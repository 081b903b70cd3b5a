"""The chat screen: conversation list, transcript, prompt and status bar, and its actions.

Network calls run in thread workers that report back by message. Reply text is the
exception: the turn's worker adds it to a buffer that a timer moves to the screen every
``FRAME_S``, so the UI wakes a few times a second while a reply streams, not once per token
(the model decodes on the same cores).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer

from assistant.errors import AssistantError
from assistant.tui import keys
from assistant.tui.api import ConversationDetail, ModelEntry, TuiApi, Unsupported
from assistant.tui.messages import (
    ConversationChosen,
    ConversationLoaded,
    ConversationsLoaded,
    DaemonConnected,
    DaemonFailed,
    PromptSubmitted,
    TurnEnded,
    TurnFailed,
    TurnFinished,
    TurnProgressed,
    TurnRouted,
)
from assistant.tui.widgets.prompt import Completions, PromptInput, slash_commands
from assistant.tui.widgets.sidebar import ConversationList, Sidebar
from assistant.tui.widgets.status import StatusBar
from assistant.tui.widgets.transcript import MessageView, Transcript, last_code_block

if TYPE_CHECKING:
    from assistant.tui.app import AssistantApp

FRAME_S = 0.2


class PendingText:
    """Reply text the turn's worker has read and the screen has not shown yet."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self._parts.append(text)

    def take(self) -> str:
        with self._lock:
            text = "".join(self._parts)
            self._parts.clear()
        return text


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = list(keys.bindings())

    def __init__(self, api: TuiApi, conversation_id: str | None = None) -> None:
        super().__init__()
        self.api = api
        self.conversation_id = conversation_id
        self.detail: ConversationDetail | None = None
        self.connected = False
        self.model = api.settings.models.default
        self.context_sizes: dict[str, int] = {}
        self.skills: list[str] = []
        self.last_route: dict[str, Any] | None = None
        self.turn = 0
        self.streaming: MessageView | None = None
        self.cancel_event = threading.Event()
        self.pending = PendingText()
        self._frames: Timer | None = None

    @property
    def assistant_app(self) -> AssistantApp:
        from assistant.tui.app import AssistantApp

        assert isinstance(self.app, AssistantApp)
        return self.app

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
        self.query_one(StatusBar).set(model=self.model)
        self.connect()

    # -- the daemon ----------------------------------------------------------------------------

    @work(thread=True, group="connect")
    def connect(self) -> None:
        try:
            health = self.api.connect()
            sizes = {m.name: m.context_length for m in self.api.models()}
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))
            return
        self.post_message(DaemonConnected(health, sizes))

    def on_daemon_connected(self, message: DaemonConnected) -> None:
        self.connected = True
        self.context_sizes = message.context_sizes
        state = "ready" if message.health.get("status") == "ready" else str(
            message.health.get("status"))
        self.query_one(StatusBar).set(state=state, context_size=self._context_size())
        self.refresh_conversations()
        if self.conversation_id is not None:
            self.load_conversation(self.conversation_id)

    def on_daemon_failed(self, message: DaemonFailed) -> None:
        self.query_one(StatusBar).set(state="no daemon")
        self.notify_error(message.message, message.hint, title="daemon")

    def notify_error(self, message: str, hint: str | None = None, title: str = "error") -> None:
        self.app.notify(message + (f"\n{hint}" if hint else ""), title=title,
                        severity="error", timeout=8, markup=False)

    def _context_size(self) -> int:
        # The daemon gives a chat model models.context_length tokens when that is set.
        trained = self.context_sizes.get(self.model, 0)
        configured = self.api.settings.models.context_length
        return min(trained, configured) if trained and configured else trained or configured

    # -- conversations -------------------------------------------------------------------------

    @work(thread=True, group="list", exclusive=True)
    def refresh_conversations(self) -> None:
        try:
            self.post_message(ConversationsLoaded(self.api.conversations()))
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))

    def on_conversations_loaded(self, message: ConversationsLoaded) -> None:
        self.query_one(Sidebar).show(message.conversations, self.conversation_id)

    @work(thread=True, group="load", exclusive=True)
    def load_conversation(self, conversation_id: str, message_id: str | None = None) -> None:
        try:
            detail = self.api.conversation(conversation_id)
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))
            return
        self.post_message(ConversationLoaded(detail, message_id))

    async def on_conversation_loaded(self, message: ConversationLoaded) -> None:
        detail = message.detail
        self.detail = detail
        self.conversation_id = detail.id
        path = detail.path()
        branches = {}
        for item in path:
            siblings = detail.siblings(item.id)
            if len(siblings) > 1:
                branches[item.id] = ([s.id for s in siblings].index(item.id) + 1, len(siblings))
        transcript = self.query_one(Transcript)
        await transcript.show(path, branches)
        replies = [m for m in path if m.role == "assistant"]
        status = self.query_one(StatusBar)
        if replies:
            last = replies[-1]
            self.last_route = last.route
            route = last.route or {}
            status.set(skill=last.skill or "", method=str(route.get("method", "")),
                       score=route.get("score"),
                       tokens_per_s=last.timings.get("tokens_per_s"),
                       context_used=last.prompt_tokens + last.completion_tokens)
        else:
            self.last_route = None
            status.set(skill="", method="", score=None, tokens_per_s=None, context_used=0)
        if message.focus_message_id:
            transcript.focus_message(message.focus_message_id)
        self.query_one(Sidebar).current = detail.id
        self.refresh_conversations()

    def on_conversation_chosen(self, message: ConversationChosen) -> None:
        if self.streaming is not None:
            self.action_cancel()
        self.load_conversation(message.conversation_id, message.message_id)
        self.query_one(PromptInput).focus()

    # -- turns ---------------------------------------------------------------------------------

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

    async def _start_turn(self, text: str | None,
                          open_stream: Callable[..., Iterator[dict[str, Any]]]) -> None:
        transcript = self.query_one(Transcript)
        if text is not None:
            await transcript.add(MessageView("user", text))
        self.streaming = await transcript.add(MessageView("assistant", status="streaming"))
        self.turn += 1
        self.cancel_event = threading.Event()
        self.pending = PendingText()
        if self._frames is not None:
            self._frames.stop()
        self._frames = self.set_interval(FRAME_S, self._show_pending)
        self.query_one(StatusBar).set(state="generating…")
        fields: dict[str, Any] = {"conversation_id": self.conversation_id, "model": self.model}
        if self.assistant_app.max_tokens:
            fields["max_tokens"] = self.assistant_app.max_tokens
        self.run_turn(self.turn, open_stream, fields, self.cancel_event, self.pending)

    @work(thread=True, group="turn")
    def run_turn(self, turn: int, open_stream: Callable[..., Iterator[dict[str, Any]]],
                 fields: dict[str, Any], cancel: threading.Event,
                 pending: PendingText) -> None:
        try:
            events = open_stream(**fields)
            try:
                for event in events:
                    if cancel.is_set():
                        break
                    kind = event.get("type")
                    if kind == "delta":
                        pending.add(str(event.get("text") or ""))
                    elif kind == "route":
                        self.post_message(TurnRouted(turn, event))
                    elif kind in {"progress", "notice"}:
                        self.post_message(TurnProgressed(turn, event))
                    elif kind == "done":
                        self.post_message(TurnFinished(turn, event))
                    elif kind == "error":
                        self.post_message(TurnFailed(turn, str(event.get("message"))))
            finally:
                # Closing the stream closes the connection: the daemon cancels the turn.
                close = getattr(events, "close", None)
                if close is not None:
                    close()
        except Unsupported as exc:
            self.post_message(TurnFailed(turn, exc.message, exc.hint))
        except AssistantError as exc:
            self.post_message(TurnFailed(turn, exc.message, exc.hint))
        except Exception as exc:  # the connection itself: httpx errors, a daemon gone
            self.post_message(TurnFailed(turn, f"lost the daemon: {exc}"))
        finally:
            self.post_message(TurnEnded(turn))

    def _current(self, turn: int) -> MessageView | None:
        return self.streaming if turn == self.turn else None

    def _show_pending(self) -> None:
        text = self.pending.take()
        if text and self.streaming is not None and not self.cancel_event.is_set():
            self.streaming.append(text)

    def on_turn_routed(self, message: TurnRouted) -> None:
        view = self._current(message.turn)
        if view is None:
            return
        event = message.event
        self.last_route = event
        for name in event.get("scores") or {}:
            if name not in self.skills:
                self.skills.append(name)
        if event.get("skill") and event["skill"] not in self.skills:
            self.skills.append(event["skill"])
        self.query_one(PromptInput).commands = slash_commands(self.skills)
        view.message_id = event.get("message_id")
        view.set_header(skill=event.get("skill"))
        self.query_one(StatusBar).set(skill=event.get("skill", ""),
                                      method=event.get("method", ""), score=event.get("score"))
        # A new conversation joins the sidebar when the turn ends: asking the daemon for the
        # list now would take CPU from the reply being decoded.
        new = event.get("conversation_id")
        if new and new != self.conversation_id:
            self.conversation_id = new

    def on_turn_progressed(self, message: TurnProgressed) -> None:
        event = message.event
        if event.get("type") == "notice":
            self.app.notify(str(event.get("message")), severity="warning", markup=False)
            return
        done, total = event.get("done"), event.get("total")
        amount = f" {done}/{total}" if total else ""
        self.query_one(StatusBar).set(state=f"{event.get('message', 'working')}{amount}")

    async def on_turn_finished(self, message: TurnFinished) -> None:
        view = self._current(message.turn)
        if view is None:
            return
        self._show_pending()
        event = message.event
        usage = event.get("usage") or {}
        timings = event.get("timings") or {}
        status = str(event.get("status", "complete"))
        view.set_header(status=status)
        if status == "cancelled" and not self.cancel_event.is_set():
            self.app.notify("The daemon stopped the reply before it was complete "
                            "(it took longer than plugins.skill_timeout?).",
                            title="reply cancelled", severity="warning", timeout=8)
        self.query_one(StatusBar).set(
            tokens_per_s=timings.get("tokens_per_s"),
            context_used=int(usage.get("prompt_tokens", 0)) + int(
                usage.get("completion_tokens", 0)),
            context_size=self._context_size())

    async def on_turn_failed(self, message: TurnFailed) -> None:
        view = self._current(message.turn)
        if view is not None:
            view.set_header(status="error")
        self.notify_error(message.message, message.hint, title="reply failed")

    async def on_turn_ended(self, message: TurnEnded) -> None:
        view = self._current(message.turn)
        if view is None:
            return
        self._show_pending()
        if self._frames is not None:
            self._frames.stop()
            self._frames = None
        await view.finish()
        self.streaming = None
        self.query_one(StatusBar).set(state="ready")
        self.refresh_conversations()
        if self.conversation_id is not None:
            # The store's copy has ids, branches and the final status.
            self.load_conversation(self.conversation_id)

    def action_cancel(self) -> None:
        if self.streaming is None:
            return
        self.cancel_event.set()
        self.streaming.set_header(status="cancelled")
        self.app.notify("Stopped the reply.", timeout=2)

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

    def action_route(self) -> None:
        if self.last_route is None:
            self.app.notify("No turn yet: the route of the last turn shows here.",
                            severity="warning")
            return
        from assistant.tui.screens.route import RouteScreen

        skills = sorted(set(self.skills) | set(self.last_route.get("scores") or {})
                        | {"chat", "translate", "summarize", "qa"})

        def done(skill: str | None) -> None:
            if skill:
                self.call_later(self.reroute, skill)

        self.app.push_screen(RouteScreen(self.last_route, skills), done)

    async def reroute(self, skill: str) -> None:
        await self._regenerate(skill)

    async def action_regenerate(self) -> None:
        await self._regenerate(None)

    async def _regenerate(self, skill: str | None) -> None:
        reply = self.query_one(Transcript).last_reply()
        mine = self.query_one(Transcript).last_user()
        if reply is None or reply.message_id is None or mine is None:
            self.app.notify("No reply to regenerate yet.", severity="warning")
            return
        if self.streaming is not None:
            self.app.notify("A reply is still being written; Esc stops it.", severity="warning")
            return
        message_id, text = reply.message_id, mine.content
        await reply.remove()
        await self._start_turn(None, lambda **f: self.api.stream_regenerate(
            message_id, text, skill=skill, **f))

    def action_edit_last(self) -> None:
        mine = self.query_one(Transcript).last_user()
        if mine is None or mine.message_id is None:
            self.app.notify("No message of yours to edit yet.", severity="warning")
            return
        from assistant.tui.screens.dialogs import AskScreen

        message_id = mine.message_id

        def done(text: str | None) -> None:
            if text:
                self.call_later(self._start_turn, text,
                                lambda **f: self.api.stream_edit(message_id, text, **f))

        self.app.push_screen(AskScreen("Edit your message (a new branch):", mine.content), done)

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

    def action_switch_model(self, name: str | None = None) -> None:
        from assistant.tui.screens.models import ModelScreen

        def done(entry: ModelEntry | None) -> None:
            if entry is not None:
                self.model = entry.name
                if entry.context_length:
                    self.context_sizes[entry.name] = entry.context_length
                self.query_one(StatusBar).set(model=entry.name,
                                              context_size=self._context_size())
                self.app.notify(f"Now chatting with {entry.name}.", timeout=3)

        self.app.push_screen(ModelScreen(self.api, self.model, preselect=name), done)

    def action_documents(self) -> None:
        from assistant.tui.screens.dialogs import AskScreen

        def done(answer: str | None) -> None:
            if answer:
                self.add_documents([Path(p).expanduser() for p in answer.split()])

        self.app.push_screen(AskScreen("Documents to add for qa (paths, space-separated):",
                                       placeholder="~/notes/*.md"), done)

    @work(thread=True, group="documents")
    def add_documents(self, paths: list[Path]) -> None:
        try:
            for event in self.api.add_documents(paths):
                self.post_message(TurnProgressed(self.turn, event | {"type": "progress"}))
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))
            return
        self.app.call_from_thread(self.app.notify, "Documents added.", timeout=3)
