"""The conversation list: pinned first, then recent, narrowed live by a filter."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from assistant.tui.api import ConversationSummary
from assistant.tui.messages import ConversationChosen


class ConversationList(OptionList):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("slash", "filter", "Filter", show=False)]

    def action_filter(self) -> None:
        self.screen.query_one("#filter", Input).focus()


class Sidebar(Vertical):
    """Conversations the store holds (archived ones left out)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.conversations: list[ConversationSummary] = []
        self.current: str | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter conversations", id="filter", compact=True)
        yield ConversationList(id="conversations")

    def show(self, conversations: list[ConversationSummary], current: str | None) -> None:
        self.conversations = conversations
        self.current = current
        self._render_list()

    def select(self, conversation_id: str | None) -> None:
        """Highlight the open conversation in the list as it is (no new list is asked for)."""
        self.current = conversation_id
        self._render_list()

    def _render_list(self) -> None:
        words = self.query_one("#filter", Input).value.lower().split()
        box = self.query_one(ConversationList)
        box.clear_options()
        shown = [c for c in self.conversations
                 if all(w in c.title.lower() for w in words)]
        options = []
        for conv in shown:
            mark = "▪ " if conv.pinned else "  "
            options.append(Option(Content(f"{mark}{conv.title}"), id=conv.id))
        box.add_options(options)
        if self.current is not None:
            for index, conv in enumerate(shown):
                if conv.id == self.current:
                    box.highlighted = index

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._render_list()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one(ConversationList)
        if box.option_count:
            box.highlighted = box.highlighted or 0
            box.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(ConversationChosen(event.option.id))
