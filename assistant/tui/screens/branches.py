"""Choose between the branches of a turn: the replies (or edits) that share a parent."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from assistant.tui.api import StoredMessage


class BranchScreen(ModalScreen[str | None]):
    """Dismissed with the message id of the chosen branch, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, branches: list[StoredMessage], current: str) -> None:
        super().__init__(classes="dialog")
        self.branches = branches
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide"):
            yield Label("Branches of this turn  (Enter switches · Esc closes)", classes="title")
            box = OptionList(id="branches")
            for index, message in enumerate(self.branches, 1):
                first = " ".join(message.content.split())[:60] or "(empty)"
                mark = "● " if message.id == self.current else "  "
                box.add_option(Option(Content(f"{mark}{index}. {first}"), id=message.id))
            yield box

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_close(self) -> None:
        self.dismiss(None)
