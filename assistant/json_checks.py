"""What :func:`json.loads` lets through and the rest of the assistant cannot take.

Python's JSON reader accepts a lone UTF-16 surrogate (``"\\ud800"``), which no UTF-8 encoder
(SQLite, the model host's pipe, a terminal) will then write; ``NaN`` and ``Infinity``, which
are not JSON; integers of any size, which SQLite cannot store past 64 bits; and nesting as deep
as its recursion limit allows, which the encoders that write the value back out may not. These
checks walk a decoded value without recursion and name the first offending field by its path
(``conversations[0].messages[3].content``).
"""

from __future__ import annotations

import math
from typing import Any

MAX_INT = 2**63 - 1  # SQLite's INTEGER
_Path = tuple[Any, ...]  # (parent path, key) pairs, built only for the field that fails


def _render(path: _Path | None) -> str:
    keys: list[Any] = []
    while path is not None:
        path, key = path
        keys.append(key)
    out = ""
    for key in reversed(keys):
        if isinstance(key, int):
            out += f"[{key}]"
        else:  # a key may itself be the problem: written so that the message stays text
            name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
            out += f".{name}" if out else name
    return out


def lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a code point UTF-8 cannot encode (a lone surrogate)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def first_problem(value: Any, *, max_depth: int | None = None,
                  numbers: bool = False) -> tuple[str, str] | None:
    """``(path, problem)`` of the first field, in document order, that holds a lone surrogate
    (in a key or a value) or, with ``max_depth``, nests past it, or, with ``numbers``, is a
    number that is not finite or an integer past 64 bits; None when there is none. The path
    of the whole value is ``""``."""
    stack: list[tuple[Any, _Path | None, int]] = [(value, None, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if lone_surrogate(item):
                return _render(path), "holds a lone UTF-16 surrogate, which is not text"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if numbers and not -MAX_INT - 1 <= item <= MAX_INT:
                return _render(path), "is a number too large (past 64 bits)"
        elif isinstance(item, float):
            if numbers and not math.isfinite(item):
                return _render(path), f"is {item}, which is not a JSON number"
        elif isinstance(item, dict | list):
            if max_depth is not None and depth >= max_depth:
                return _render(path), f"is nested more than {max_depth} levels deep"
            pairs = list(item.items() if isinstance(item, dict) else enumerate(item))
            for key, _ in pairs:
                if isinstance(key, str) and lone_surrogate(key):
                    return (_render((path, key)),
                            "is a key holding a lone UTF-16 surrogate, which is not text")
            # Pushed last first, so that the first field at fault is the one named.
            stack.extend((child, (path, key), depth + 1) for key, child in reversed(pairs))
    return None
