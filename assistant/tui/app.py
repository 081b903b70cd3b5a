"""The Textual application: theme, keymap, command palette, and the chat screen."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import App, SystemCommand
from textual.screen import Screen

from assistant.config import Settings
from assistant.errors import ConfigError
from assistant.tui import keys
from assistant.tui.api import TuiApi


class AssistantApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "assistant"
    ENABLE_COMMAND_PALETTE = True

    def __init__(self, settings: Settings, conversation_id: str | None = None,
                 max_tokens: int | None = None, api: TuiApi | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.api = api or TuiApi(settings)
        self.conversation_id = conversation_id
        self.max_tokens = max_tokens if max_tokens is not None else (
            settings.tui.max_tokens or None)
        self.keymap = keys.keymap(settings.tui.keys)

    def on_mount(self) -> None:
        from assistant.tui.screens.chat import ChatScreen

        theme = self.settings.tui.theme
        if theme not in self.available_themes:
            known = ", ".join(sorted(self.available_themes))
            raise ConfigError(f"config error: tui.theme = {theme!r} is not a theme",
                              f"Themes: {known}.")
        self.theme = theme
        self.set_keymap(self.keymap)
        self.push_screen(ChatScreen(self.api, self.conversation_id, max_tokens=self.max_tokens,
                                    keymap=self.keymap))

    def on_unmount(self) -> None:
        self.api.close()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        from assistant.tui.screens.chat import ChatScreen

        if not isinstance(screen, ChatScreen):
            return
        for action in keys.ACTIONS:
            if action.id == "cancel":
                continue
            key = keys.display_key(keys.key_of(action.id, self.keymap))

            def run(name: str = action.action) -> None:
                self.call_later(screen.run_action, name)

            yield SystemCommand(action.description, f"{key} · {action.id}", run)


def check_theme(settings: Settings) -> None:
    """Fail before the terminal switches screens when the configured theme does not exist."""
    from textual.theme import BUILTIN_THEMES

    if settings.tui.theme not in BUILTIN_THEMES:
        raise ConfigError(
            f"config error: tui.theme = {settings.tui.theme!r} is not a theme",
            "Themes: " + ", ".join(sorted(BUILTIN_THEMES)) + ".")
