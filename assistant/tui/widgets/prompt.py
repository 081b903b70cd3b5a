"""The message box: multi-line, Enter sends, slash-command completion, input history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual import events
from textual.content import Content
from textual.widgets import OptionList, TextArea
from textual.widgets.option_list import Option

from assistant.tui.api import SkillEntry
from assistant.tui.messages import PromptSubmitted


@dataclass(frozen=True)
class SlashCommand:
    name: str
    help: str
    local: bool  # handled by the UI, not sent to the daemon


LOCAL_COMMANDS = {
    "model": "switch the chat model (/model NAME, or a list)",
    "docs": "add documents for the qa skill",
    "new": "start a new conversation",
    "search": "search all history (/search WORDS)",
    "rename": "rename this conversation (/rename TITLE)",
    "export": "export this conversation (/export md|json)",
    "help": "show every key",
}


def slash_commands(skills: Sequence[SkillEntry]) -> list[SlashCommand]:
    """A command per skill the daemon lists (``/<skill> TEXT`` skips routing), by name, then
    the commands the UI handles itself."""
    commands = [SlashCommand(s.name, s.description or f"use the {s.name} skill", False)
                for s in sorted(skills, key=lambda s: s.name)]
    commands += [SlashCommand(n, h, True) for n, h in LOCAL_COMMANDS.items()]
    return commands


class Completions(OptionList):
    """The slash commands matching what is typed, shown above the prompt."""

    can_focus = False


class PromptInput(TextArea):
    """Enter sends; Shift+Enter or Ctrl+J starts a new line; Up/Down walk the history at the
    first / last line; Tab completes a slash command."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         compact=True, highlight_cursor_line=False)
        self.sent: list[str] = []
        self._history_index: int | None = None
        self._draft = ""
        self.commands: list[SlashCommand] = slash_commands([])
        self.placeholder = "Message · Enter sends · Ctrl+J new line · / commands · F1 keys"

    def offer_skills(self, skills: Sequence[SkillEntry]) -> None:
        """Complete ``/<skill>`` for each of ``skills`` (the daemon's), besides the UI's own."""
        self.commands = slash_commands(skills)

    @property
    def completions(self) -> Completions | None:
        try:
            return self.screen.query_one(Completions)
        except Exception:
            return None

    def matching_commands(self) -> list[SlashCommand]:
        text = self.text
        if not text.startswith("/") or " " in text or "\n" in text:
            return []
        head = text[1:].lower()
        return [c for c in self.commands if c.name.startswith(head)]

    def _show_completions(self) -> None:
        box = self.completions
        if box is None:
            return
        found = self.matching_commands()
        box.clear_options()
        if not found or (len(found) == 1 and f"/{found[0].name}" == self.text):
            box.display = False
            return
        # A plugin's description is text, not markup: "[fr]" must not be read as a style.
        box.add_options([Option(Content.assemble(f"/{c.name}  ", (c.help, "dim")), id=c.name)
                         for c in found])
        box.highlighted = 0
        box.display = True

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self._show_completions()

    def _accept_completion(self) -> bool:
        box = self.completions
        if box is None or not box.display or box.highlighted is None:
            return False
        option = box.get_option_at_index(box.highlighted)
        self.text = f"/{option.id} "
        self.move_cursor(self.document.end)
        box.display = False
        return True

    async def _on_key(self, event: events.Key) -> None:
        box = self.completions
        completing = box is not None and box.display
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            if not completing or (self._accept_completion() and not self._takes_argument()):
                self._submit()
            return
        if event.key in {"shift+enter", "ctrl+j"}:
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        if event.key == "tab" and completing:
            event.prevent_default()
            event.stop()
            self._accept_completion()
            return
        if event.key in {"up", "down"}:
            if completing and box is not None:
                event.prevent_default()
                event.stop()
                (box.action_cursor_up if event.key == "up" else box.action_cursor_down)()
                return
            row = self.cursor_location[0]
            last = self.document.line_count - 1
            at_edge = (event.key == "up" and row == 0) or (event.key == "down" and row == last)
            if at_edge and self._walk_history(-1 if event.key == "up" else 1):
                event.prevent_default()
                event.stop()
                return
        await super()._on_key(event)

    def _takes_argument(self) -> bool:
        return self.text.strip().lstrip("/") not in {"new", "help", "docs", "model", "search"}

    def _walk_history(self, step: int) -> bool:
        if not self.sent:
            return False
        if self._history_index is None:
            if step > 0:
                return False
            self._draft = self.text
            index = len(self.sent) - 1
        else:
            index = self._history_index + step
        if index >= len(self.sent):
            self._history_index = None
            self.text = self._draft
        elif index < 0:
            return True
        else:
            self._history_index = index
            self.text = self.sent[index]
        self.move_cursor(self.document.end)
        return True

    def _submit(self) -> None:
        text = self.text.strip()
        if not text:
            return
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._history_index = None
        self.text = ""
        self.post_message(PromptSubmitted(text))
