"""Every hook has a section in docs/plugins.md and a test named after it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from assistant import hookspecs

REPO = Path(__file__).resolve().parent.parent.parent
HOOKS = sorted(
    name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, "assistant_spec")
)


def test_hooks_found() -> None:
    assert "register_skills" in HOOKS and len(HOOKS) == 8


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    docs = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    heading = f"### `{hook}({params})`"
    assert re.search(rf"^{re.escape(heading)}$", docs, re.M), f"docs/plugins.md lacks {heading}"
    section = docs.split(heading, 1)[1].split("\n### ", 1)[0]
    assert "@hookimpl" in section, f"the {hook} section needs an example"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "tests").rglob("test_*.py"))
    assert re.search(rf"^def test_{hook}\b", tests, re.M), f"no test named test_{hook}"


def test_every_hook_has_a_docstring() -> None:
    for hook in HOOKS:
        doc = getattr(hookspecs, hook).__doc__ or ""
        assert "Return" in doc, f"{hook}'s docstring must say what to return"
