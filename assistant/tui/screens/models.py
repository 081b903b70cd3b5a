"""Switch the chat model: the list from /v1/models, loading with a visible progress state.

A remote engine's model (``NAME/MODEL``) is marked with its engine and that engine's state,
and switched to at once: there is nothing to load here."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, ProgressBar
from textual.widgets.option_list import Option

from assistant.errors import AssistantError
from assistant.tui.api import ModelEntry, TuiApi, context_size


class ModelScreen(ModalScreen[ModelEntry | None]):
    """Dismissed with the model, once it is loaded, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, api: TuiApi, current: str, preselect: str | None = None) -> None:
        super().__init__(classes="dialog")
        self.api = api
        self.current = current
        self.preselect = preselect
        self.entries: list[ModelEntry] = []
        self.loading = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide"):
            yield Label("Chat model  (Enter loads and switches · Esc closes)", classes="title")
            yield OptionList(id="models")
            yield Label("listing models…", id="state")
            yield ProgressBar(total=None, show_eta=False, id="progress")

    def on_mount(self) -> None:
        self.query_one(ProgressBar).display = False
        self.list_models()

    @work(thread=True, group="models")
    def list_models(self) -> None:
        try:
            entries = self.api.models()
        except AssistantError as exc:
            self.app.call_from_thread(self.app.notify, exc.message, severity="error")
            self.app.call_from_thread(self.dismiss, None)
            return
        self.app.call_from_thread(self.show_models, entries)

    def show_models(self, entries: list[ModelEntry]) -> None:
        self.entries = entries
        box = self.query_one(OptionList)
        for entry in entries:
            marks = ["current" if entry.name == self.current else "",
                     "loaded" if entry.loaded else "",
                     _remote(entry),
                     f"ctx {entry.context}" if entry.context else ""]
            detail = " · ".join(m for m in marks if m)
            box.add_option(Option(Content(f"{entry.name}  {detail}"), id=entry.name))
        self.query_one("#state", Label).update(f"{len(entries)} chat models")
        box.focus()
        names = [e.name for e in entries]
        if self.preselect is not None:
            if self.preselect in names:
                box.highlighted = names.index(self.preselect)
                box.action_select()
            else:
                self.query_one("#state", Label).update(f"no chat model named {self.preselect!r}")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self.loading:
            return
        entry = next(e for e in self.entries if e.name == event.option.id)
        if entry.engine is not None:
            self.dismiss(entry)  # the engine runs it: a turn says if it cannot
            return
        self.loading = True
        self.query_one("#state", Label).update(f"loading {entry.name}…")
        self.query_one(ProgressBar).display = True
        self.load(entry)

    @work(thread=True, group="models")
    def load(self, entry: ModelEntry) -> None:
        try:
            result = self.api.load_model(entry.name)
        except AssistantError as exc:
            self.app.call_from_thread(self.failed, exc.message)
            return
        loaded = ModelEntry(entry.name, entry.kind, True, context_size(result.get("context")))
        self.app.call_from_thread(self.dismiss, loaded)

    def failed(self, message: str) -> None:
        self.loading = False
        self.query_one(ProgressBar).display = False
        self.query_one("#state", Label).update(f"failed: {message}")
        self.app.notify(message, title="model", severity="error")

    def action_close(self) -> None:
        self.dismiss(None)


def _remote(entry: ModelEntry) -> str:
    if entry.engine is None:
        return ""
    state = entry.engine_state if entry.engine_state not in {None, "up"} else None
    return f"remote, engine {entry.engine}" + (f" ({state.replace('_', ' ')})" if state else "")
