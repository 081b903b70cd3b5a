"""The chat screen (:mod:`.screen`) and the objects it hands the work to: :mod:`.turn_stream`,
:mod:`.conversations`, :mod:`.documents`."""

from __future__ import annotations

from assistant.tui.screens.chat.screen import ChatScreen

__all__ = ["ChatScreen"]
