"""assistant: a local, offline, plugin-based conversational assistant.

This module stays light: importing it loads no model runtime, UI toolkit or NLP library. The
names plugin authors need are exported here and resolved on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from assistant.guards import Filtered, Guard, Verdict
    from assistant.hookspecs import hookimpl
    from assistant.models.backend import (
        Backend,
        ChatMessage,
        Delta,
        GenerationParams,
        ModelInfo,
        Tool,
        ToolCall,
    )
    from assistant.skills import (
        Citation,
        DeltaEvent,
        Done,
        ErrorEvent,
        Event,
        Notice,
        Progress,
        Reply,
        Skill,
        SkillContext,
        Turn,
    )

_EXPORTS = {
    "Backend": "assistant.models.backend",
    "ChatMessage": "assistant.models.backend",
    "Citation": "assistant.skills",
    "Delta": "assistant.models.backend",
    "DeltaEvent": "assistant.skills",
    "Done": "assistant.skills",
    "ErrorEvent": "assistant.skills",
    "Event": "assistant.skills",
    "Filtered": "assistant.guards",
    "GenerationParams": "assistant.models.backend",
    "Guard": "assistant.guards",
    "ModelInfo": "assistant.models.backend",
    "Notice": "assistant.skills",
    "Progress": "assistant.skills",
    "Reply": "assistant.skills",
    "Skill": "assistant.skills",
    "SkillContext": "assistant.skills",
    "Tool": "assistant.models.backend",
    "ToolCall": "assistant.models.backend",
    "Turn": "assistant.skills",
    "Verdict": "assistant.guards",
    "hookimpl": "assistant.hookspecs",
}

__all__ = [
    "Backend",
    "ChatMessage",
    "Citation",
    "Delta",
    "DeltaEvent",
    "Done",
    "ErrorEvent",
    "Event",
    "Filtered",
    "GenerationParams",
    "Guard",
    "ModelInfo",
    "Notice",
    "Progress",
    "Reply",
    "Skill",
    "SkillContext",
    "Tool",
    "ToolCall",
    "Turn",
    "Verdict",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'assistant' has no attribute {name!r}")
