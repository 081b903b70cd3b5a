"""Search all history: ranked hits with snippets; Enter opens the conversation at the hit."""

from __future__ import annotations

import re
import time
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from assistant.errors import AssistantError
from assistant.tui.api import SearchResult, TuiApi

_MARK = re.compile(r"<mark>(.*?)</mark>", re.S)


def snippet_content(snippet: str) -> Content:
    """The snippet on one line, its ``<mark>`` matches in bold reverse."""
    flat = " ".join(snippet.split())
    parts: list[tuple[str, str] | str] = []
    last = 0
    for match in _MARK.finditer(flat):
        parts.append(flat[last:match.start()])
        parts.append((match.group(1), "bold reverse"))
        last = match.end()
    parts.append(flat[last:])
    return Content.assemble(*parts)


class SearchScreen(ModalScreen[tuple[str, str] | None]):
    """Dismissed with (conversation id, message id), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close"),
                Binding("down", "results", "Results", show=False)]
    DEBOUNCE_S = 0.15

    def __init__(self, api: TuiApi, query: str = "") -> None:
        super().__init__(classes="dialog")
        self.api = api
        self.initial = query
        self.results: list[SearchResult] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide tall"):
            yield Label("Search all history  (Enter opens · Esc closes)", classes="title")
            yield Input(self.initial, placeholder="words to find", id="query")
            yield Label("", id="count")
            yield OptionList(id="results")

    def on_mount(self) -> None:
        if self.initial:
            self.run_search(self.initial)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.run_search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#results", OptionList)
        if box.option_count:
            box.highlighted = 0
            box.focus()

    def action_results(self) -> None:
        box = self.query_one("#results", OptionList)
        if box.option_count and not box.has_focus:
            box.highlighted = box.highlighted or 0
            box.focus()

    @work(thread=True, exclusive=True, group="search")
    def run_search(self, query: str) -> None:
        time.sleep(self.DEBOUNCE_S)
        from textual.worker import get_current_worker

        if get_current_worker().is_cancelled:
            return
        if not query.strip():
            self.app.call_from_thread(self.show_results, [], "")
            return
        try:
            results = self.api.search(query)
        except AssistantError as exc:
            self.app.call_from_thread(self.show_results, [], f"search failed: {exc.message}")
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show_results, results, "")

    def show_results(self, results: list[SearchResult], error: str) -> None:
        self.results = results
        box = self.query_one("#results", OptionList)
        box.clear_options()
        for index, hit in enumerate(results):
            head = Content.assemble((hit.conversation_title, "bold"), f"  · {hit.role}")
            box.add_option(Option(Content("\n").join([head, snippet_content(hit.snippet)]),
                                  id=str(index)))
        count = error or (f"{len(results)} result{'s' * (len(results) != 1)}"
                          if self.query_one("#query", Input).value.strip() else "")
        self.query_one("#count", Label).update(count)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        hit = self.results[int(event.option.id or 0)]
        self.dismiss((hit.conversation_id, hit.message_id))

    def action_close(self) -> None:
        self.dismiss(None)
