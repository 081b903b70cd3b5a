"""Every key of the UI, as configured."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from assistant.tui.keys import ACTIONS, display_key, key_of

PROMPT_KEYS = (
    ("Enter", "Send the message (or accept a / completion)"),
    ("Shift+Enter, Ctrl+J", "New line in the message"),
    ("Up, Down", "Earlier / later messages you sent"),
    ("Tab", "Complete a / command; otherwise next pane"),
    ("/ (in the list)", "Filter the conversation list"),
    ("Ctrl+P", "Command palette: every action by name, themes"),
    ("Ctrl+Q", "Quit"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "close", "Close")]

    def __init__(self, keymap: dict[str, str]) -> None:
        super().__init__(classes="dialog")
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        rows = [(display_key(key_of(a.id, self.keymap)), a.description) for a in ACTIONS]
        rows += list(PROMPT_KEYS)
        width = max(len(k) for k, _ in rows) + 2
        text = "\n".join(f"{k:<{width}}{d}" for k, d in rows)
        with Vertical(classes="box wide"):
            yield Label("Keys  (Esc closes; change them in [tui.keys] of the config file)",
                        markup=False, classes="title")
            with VerticalScroll():
                yield Static(text, markup=False, id="keys")

    def action_close(self) -> None:
        self.dismiss(None)
