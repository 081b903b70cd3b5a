"""`assistant plugins new NAME`: a working plugin to start from.

It writes ``assistant-NAME/``: a package ``assistant_NAME`` with skill ``NAME`` (a line of its
own, then the model's comment) and an ``after_turn`` hook that logs the skill's replies; tests
on the test kit (:mod:`assistant.testing`) that pass as written; a pyproject that registers the
entry point and depends on this project's distribution.
"""

from __future__ import annotations

import contextlib
import re
from importlib import metadata
from pathlib import Path
from string import Template

from assistant.errors import InputError

# The name of this project's distribution: a plugin depends on it (never on "assistant", an
# unrelated project on the package registry).
DISTRIBUTION = "assistant-daemon"

# Words of lower-case letters and digits joined by single underscores: ``a_`` and ``a__b``
# would make distribution names (``assistant-a-``) pip refuses or reads as another.
NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
MAX_NAME = 40

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "assistant-$dist"
version = "0.1.0"
description = "A plugin for assistant: the $name skill"
requires-python = ">=3.11"
dependencies = ["$distribution"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The daemon finds plugins through this entry-point group.
[project.entry-points.assistant]
$name = "$package"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """\
# assistant-$dist

A plugin for assistant: the `$name` skill. Written by `assistant plugins new $name`.

    assistant plugins install -e .     # into the daemon's environment; the daemon reloads
    python -m pytest                   # the tests run on the test kit's fake model
    assistant ask "/$name hello there"
    assistant plugins reload           # after an edit: the daemon restarts with your code
    assistant plugins list             # loaded? disabled after failures? the last error

See docs/plugins.md of assistant for the hooks, the skill context and debugging a plugin.
"""

PACKAGE = '''\
"""The $name plugin: skill ``$name`` and a hook that logs its replies."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from assistant import ChatMessage, DeltaEvent, Event, Reply, Skill, SkillContext, Turn, hookimpl

# Records go to the daemon's log (daemon.log in its runtime dir), one JSON object a line.
log = logging.getLogger(__name__)


class $cls(Skill):
    name = "$name"
    description = "Count the words of the text, then let the model comment on it."
    # The router compares each turn with these: several per language you want routed here.
    examples = (
        "count the words of this",
        "how many words are in this sentence",
        "cuenta las palabras de esto",
        "zähle die Wörter",
    )

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        # This runs on a thread and event loop of its own (Skill.own_loop): a blocking call
        # holds only this turn, within the skill timeout. Hooks run on the daemon's loop:
        # never block in them (await, or `await asyncio.to_thread(...)`).
        words = len(turn.text.split())
        yield DeltaEvent(f"{words} word{'s' if words != 1 else ''}\\n")
        prompt = f"In one short sentence, comment on this text: {turn.text}"
        async for piece in ctx.generate([ChatMessage("user", prompt)]):
            yield DeltaEvent(piece)


@hookimpl
def register_skills(register: Callable[[Skill], None]) -> None:
    register($cls())


@hookimpl
def after_turn(turn: Turn, reply: Reply) -> None:
    # Called once for every turn (whichever skill answered), however it ended.
    if reply.skill == $cls.name:
        log.info("$name answered %d characters (%s)", len(reply.text), reply.status)
'''

CONFTEST = """\
# The test kit's fixtures: fake_backend, plugin_host, assistant_env, fake_settings, temp_daemon.
pytest_plugins = ["assistant.testing"]
"""

TESTS = '''\
"""Tests of the $name plugin on the test kit's deterministic fake model: no model file needed."""

from __future__ import annotations

import asyncio
import logging

import pytest
from assistant.config import Settings
from assistant.testing import FakeBackend, fake_context, in_process_daemon, run_skill_text

import $package
from $package import $cls


def test_the_skill_counts_words_then_adds_the_models_comment() -> None:
    ctx = fake_context(FakeBackend(["A fine sentence."]))
    text, events = asyncio.run(run_skill_text($cls(), "three little words", ctx))
    assert text == "3 words\\nA fine sentence."
    assert events[-1].status == "complete"


def test_a_turn_through_the_daemon_reaches_the_skill_and_the_hook(
    fake_settings: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    async def turn() -> list[dict[str, object]]:
        # The daemon's app, store, plugins and router, in this process, on the fake model;
        # the plugin is registered as installed.
        async with in_process_daemon(fake_settings, plugins={"$name": $package}) as daemon:
            return await daemon.events("/api/turns", {"text": "/$name hello there"})

    with caplog.at_level(logging.INFO, logger="$package"):
        events = asyncio.run(turn())
    assert events[0]["type"] == "route" and events[0]["skill"] == "$name"
    text = "".join(str(e["text"]) for e in events if e["type"] == "delta")
    assert text.startswith("2 words\\n")
    assert events[-1]["type"] == "done" and events[-1]["status"] == "complete"
    assert "$name answered" in caplog.text
'''


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part) or "Plugin"


def taken(name: str) -> str | None:
    """What already uses ``name`` in this environment, or None: an installed plugin (its
    entry point), a skill or guard one registers, or the distribution ``assistant-NAME``."""
    from assistant.plugins import GROUP, PluginHost

    for ep in metadata.entry_points(group=GROUP):
        if ep.name == name:
            owner = f" ({ep.dist.metadata['Name']} {ep.dist.version})" if ep.dist else ""
            return f"the installed plugin '{name}'{owner} has it"
    dist = f"assistant-{name.replace('_', '-')}"
    with contextlib.suppress(metadata.PackageNotFoundError):
        return f"the distribution {dist} {metadata.version(dist)} is installed"
    host = PluginHost()  # what the installed plugins register: loading them tells
    host.load_entry_points()
    if name in host.skills:
        return f"plugin '{host.skill_plugin[name]}' registers the skill '{name}'"
    if name in host.guards:
        return f"plugin '{host.guard_plugin[name]}' registers the guard '{name}'"
    return None


def write_plugin(name: str, parent: Path) -> Path:
    """Write ``parent/assistant-NAME`` and return it. NAME becomes the skill's and the entry
    point's name, and must not be taken (:func:`taken`); an existing folder is never
    overwritten."""
    if len(name) > MAX_NAME or not NAME.fullmatch(name):
        raise InputError(f"{name!r} cannot name a plugin",
                         f"Use up to {MAX_NAME} lower-case letters and digits, starting with a "
                         "letter, words joined by single underscores (it becomes the skill's "
                         "name and part of a Python package's).")
    user = taken(name)
    if user is not None:
        raise InputError(f"the name {name!r} is taken: {user}",
                         "Choose another name (`assistant plugins list` shows the plugins and "
                         "skills installed); a second plugin of that name would not load.")
    dist = name.replace("_", "-")
    root = parent / f"assistant-{dist}"
    if root.exists():
        raise InputError(f"{root} exists already", "Choose another name or --dir.")
    values = {"name": name, "dist": dist, "package": f"assistant_{name}",
              "cls": class_name(name), "distribution": DISTRIBUTION}
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"assistant_{name}/__init__.py": PACKAGE,
        "tests/conftest.py": CONFTEST,
        f"tests/test_{name}.py": TESTS,
    }
    for path, template in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(template).substitute(values), encoding="utf-8")
    return root
