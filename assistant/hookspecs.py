"""Every hook a plugin may implement. Plugins mark implementations with ``@hookimpl``.

Registration hooks run once, when plugins load, and hand the plugin a ``register``
callable: the registered objects (skills, backends, guards, commands) do the work. Event hooks
run around turns and the daemon's life; each implementation is called on its own, so one that
raises is reported and the others still run. See docs/plugins.md for an example of each.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "assistant"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_skills(register: Any) -> None:
    """Register the plugin's skills, once, when plugins load.

    ``register(skill)`` takes a :class:`assistant.skills.Skill` instance; call it once per
    skill. Skill names must be unique across plugins: a duplicate is reported as a plugin error.
    Return nothing.
    """


@hookspec
def register_models(register: Any) -> None:
    """Register model backends, once, when plugins load.

    ``register(backend)`` takes a :class:`assistant.models.backend.Backend` instance; every
    model name its ``models()`` lists becomes usable by name (a remote API, a fake model for
    tests). Return nothing.
    """


@hookspec
def register_guards(register: Any) -> None:
    """Register guards, once, when plugins load.

    ``register(guard)`` takes a :class:`assistant.guards.Guard` instance: its ``check`` may
    block or rewrite each user turn before it is stored or routed, its ``filter`` may redact or
    stop the reply as it streams, before any text reaches the client or the store. Guard names
    must be unique across plugins. Return nothing.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``assistant`` command line, when the CLI starts.

    ``cli`` is the top-level :class:`click.Group`; call ``cli.command()`` or ``cli.add_command``.
    Return nothing.
    """


@hookspec
def before_turn(turn: Any) -> None:
    """Called for every user turn after routing, before the skill runs.

    ``turn`` is the :class:`assistant.skills.Turn` (text, conversation id, chosen skill,
    route decision). A logger may read it, or add entries to ``turn.meta``; to block or
    change the turn, register a guard (``register_guards``). Runs under
    ``plugins.hook_timeout`` (a sync implementation on a thread of its own). Return nothing;
    an exception or the timeout is reported as a notice and the turn still runs.
    """


@hookspec
def after_turn(turn: Any, reply: Any) -> None:
    """Called after a skill finished a turn (complete, cancelled or failed).

    ``turn`` is the :class:`assistant.skills.Turn`; ``reply`` the :class:`assistant.skills.Reply`
    (the text produced, the final status, the skill's name). For memory and logging plugins.
    Runs under ``plugins.hook_timeout``, as ``before_turn`` does. Return nothing; an exception
    or the timeout is reported and does not change the reply.
    """


@hookspec
def startup(daemon: Any) -> None:
    """Called once when the daemon has started, before it accepts turns.

    ``daemon`` is the daemon's parts, :class:`assistant.daemon.services.Services`: ``settings``,
    ``models`` (the model manager), ``plugins``, ``store`` (``None`` when it could not be
    opened) and ``turns``. Return nothing, or an awaitable the daemon awaits. An exception is
    reported; the daemon starts anyway.
    """


@hookspec
def shutdown(daemon: Any) -> None:
    """Called once when the daemon stops, after the last request finished or was cancelled.

    ``daemon`` is the same object ``startup`` received. Release what ``startup`` acquired.
    Return nothing, or an awaitable. An exception is reported; shutdown continues.
    """
