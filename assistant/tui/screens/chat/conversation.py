"""The first layer of the chat screen: its layout, the daemon connection and the open
conversation (the sidebar's list, the transcript of the active path, the status bar).

Network calls run in thread workers that report back by message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen

from assistant.errors import AssistantError
from assistant.tui.api import ConversationDetail, TuiApi
from assistant.tui.messages import (
    ConversationLoaded,
    ConversationsLoaded,
    DaemonConnected,
    DaemonFailed,
)
from assistant.tui.widgets.prompt import Completions, PromptInput
from assistant.tui.widgets.sidebar import Sidebar
from assistant.tui.widgets.status import StatusBar
from assistant.tui.widgets.transcript import Transcript

if TYPE_CHECKING:
    from assistant.tui.app import AssistantApp


class ConversationScreen(Screen[None]):
    """Shows one conversation of the daemon's; :class:`ChatScreen` adds turns and actions."""

    def __init__(self, api: TuiApi, conversation_id: str | None = None) -> None:
        super().__init__()
        self.api = api
        self.conversation_id = conversation_id
        self.detail: ConversationDetail | None = None
        self.connected = False
        self.model = api.settings.models.default
        self.skills: list[str] = []
        self.last_route: dict[str, Any] | None = None

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
            sizes = {m.name: m.context for m in self.api.models()}
        except AssistantError as exc:
            self.post_message(DaemonFailed(exc.message, exc.hint))
            return
        self.post_message(DaemonConnected(health, sizes))

    def on_daemon_connected(self, message: DaemonConnected) -> None:
        self.connected = True
        state = "ready" if message.health.get("status") == "ready" else str(
            message.health.get("status"))
        self.query_one(StatusBar).set(state=state,
                                      context_size=message.context_sizes.get(self.model))
        self.refresh_conversations()
        if self.conversation_id is not None:
            self.load_conversation(self.conversation_id)

    def on_daemon_failed(self, message: DaemonFailed) -> None:
        self.query_one(StatusBar).set(state="no daemon")
        self.notify_error(message.message, message.hint, title="daemon")

    def notify_error(self, message: str, hint: str | None = None, title: str = "error") -> None:
        self.app.notify(message + (f"\n{hint}" if hint else ""), title=title,
                        severity="error", timeout=8, markup=False)

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
