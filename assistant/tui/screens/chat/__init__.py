"""The chat screen, in layers: :mod:`.conversation`, :mod:`.turns`, :mod:`.documents`,
:mod:`.screen`."""

from __future__ import annotations

from assistant.tui.screens.chat.screen import ChatScreen

__all__ = ["ChatScreen"]
