"""The terminal UI (Textual). Importing this package loads no Textual: :func:`run` does."""

from __future__ import annotations

from assistant.config import Settings


def run(settings: Settings, conversation_id: str | None = None) -> None:
    """Open the chat UI; domain errors found before it starts propagate to the CLI's edge."""
    from assistant.tui import keys
    from assistant.tui.app import AssistantApp, check_theme

    keys.keymap(settings.tui.keys)
    check_theme(settings)
    AssistantApp(settings, conversation_id).run()
