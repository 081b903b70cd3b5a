"""assistant: a local, offline, plugin-based conversational assistant.

This module stays light: importing it loads no model runtime, UI toolkit or NLP library.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
