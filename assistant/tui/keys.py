"""Every action of the terminal UI: its id (the name used in ``[tui.keys]``), default key,
the screen action it runs and what it does. Bindings, the help screen and the command palette
are all built from this one table.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str
    key: str
    action: str
    description: str
    # Keys the focused prompt would otherwise take (ctrl+y, f-keys) need priority.
    priority: bool = True


ACTIONS: tuple[Action, ...] = (
    Action("help", "f1", "help", "Show every key"),
    Action("new_conversation", "ctrl+n", "new_conversation", "New conversation"),
    Action("rename", "f2", "rename", "Rename this conversation"),
    Action("archive", "f3", "archive", "Archive this conversation"),
    Action("pin", "f4", "pin", "Pin or unpin this conversation"),
    Action("delete", "f8", "delete", "Delete this conversation (asks first)"),
    Action("search", "ctrl+f", "search", "Search all history"),
    Action("sidebar", "ctrl+t", "focus_sidebar", "Focus the conversation list and its filter"),
    Action("prompt", "f6", "focus_prompt", "Focus the message box"),
    Action("export_markdown", "ctrl+s", "export('md')", "Export this conversation to Markdown"),
    Action("export_json", "ctrl+x", "export('json')", "Export this conversation to JSON"),
    Action("copy_message", "ctrl+y", "copy_message", "Copy the last reply (OSC 52)"),
    Action("copy_code", "ctrl+k", "copy_code", "Copy the last code block (OSC 52)"),
    Action("route", "ctrl+r", "route", "Explain the last turn's route; re-route it"),
    Action("model", "ctrl+l", "switch_model", "Switch the chat model"),
    Action("regenerate", "ctrl+g", "regenerate", "Regenerate the last reply"),
    Action("edit", "ctrl+e", "edit_last", "Edit your last message into a new branch"),
    Action("branches", "ctrl+o", "branches", "Switch between branches of the last turn"),
    # F7, not Ctrl+Z: the message box keeps its undo; and not F5, pressed out of habit.
    Action("undo_summary", "f7", "toggle_summary",
           "Undo the summary in force (or redo the last undone one)"),
    Action("documents", "ctrl+d", "documents", "Add documents for the qa skill"),
    Action("cancel", "escape", "cancel", "Stop the reply being generated"),
)

BY_ID = {a.id: a for a in ACTIONS}


def bindings() -> list[Binding]:
    return [Binding(a.key, a.action, a.description, id=a.id, priority=a.priority, show=False)
            for a in ACTIONS]


def keymap(configured: dict[str, str]) -> dict[str, str]:
    """The user's ``[tui.keys]``, checked: an unknown action is a mistake worth naming."""
    from assistant.errors import ConfigError

    unknown = sorted(set(configured) - set(BY_ID))
    if unknown:
        raise ConfigError(
            f"config error: [tui.keys] names unknown action(s): {', '.join(unknown)}",
            "Known actions: " + ", ".join(a.id for a in ACTIONS) + ".")
    return dict(configured)


def key_of(action_id: str, configured: dict[str, str]) -> str:
    return configured.get(action_id, BY_ID[action_id].key)


def display_key(key: str) -> str:
    """``ctrl+n,f2`` as ``Ctrl+N, F2``."""
    names = {"escape": "Esc", "enter": "Enter", "tab": "Tab"}
    shown = []
    for part in key.split(","):
        words = [names.get(w, w.capitalize() if len(w) > 1 else w.upper())
                 for w in part.strip().split("+")]
        shown.append("+".join(w.upper() if w[:1] == "F" and w[1:].isdigit() else w
                              for w in words))
    return ", ".join(shown)
