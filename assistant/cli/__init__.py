"""The ``assistant`` command. Each noun's commands live in their own module of this package.

Errors are rendered here, once: an :class:`AssistantError` becomes ``error: …`` on stderr and
its exit code; nothing else reaches the user as a traceback.
"""

from __future__ import annotations

from typing import Any

import click

from assistant import __version__
from assistant.config import Settings, load_settings
from assistant.errors import AssistantError


class AppContext:
    """Carried in ``click.Context.obj``: flags given so far, settings loaded on first use."""

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {}
        self._settings: Settings | None = None

    def override(self, section: str, key: str, value: Any) -> None:
        if value is not None:
            self.overrides.setdefault(section, {})[key] = value
            self._settings = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.overrides)
        return self._settings


pass_app = click.make_pass_decorator(AppContext, ensure=True)


class AssistantGroup(click.Group):
    """A group that renders domain errors once, at the edge: ``error: …``, a hint, an exit code.

    Plugins' commands (the ``register_commands`` hook) are added the first time a command is
    looked up, so that ``import assistant.cli`` stays light; a plugin whose registration raises
    is reported on stderr and the other commands still work.
    """

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if AssistantGroup._plugins_added:
            return
        AssistantGroup._plugins_added = True
        try:
            from assistant.plugins import load_plugins

            problems = load_plugins(load_settings()).call("register_commands", cli=self)
        except Exception as exc:  # a broken config or plugin must not take the CLI down
            problems = [f"plugin commands are unavailable: {exc}"]
        for problem in problems:
            click.echo(f"warning: {problem}", err=True)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and self is main:
            self._add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        if self is main:
            self._add_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AssistantError as exc:
            from assistant.cli.terminal import block

            # A message may quote what the user or a file gave (an id, a path, a title).
            click.echo(f"error: {block(exc.message)}", err=True)
            if exc.hint:
                click.echo(block(exc.hint), err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=AssistantGroup, invoke_without_command=True)
@click.version_option(__version__, prog_name="assistant")
@click.pass_context
def main(ctx: click.Context) -> None:
    """A local, offline assistant: chat, translate, summarize and ask your documents.

    With no command, opens the chat in the terminal (starting the daemon if needed).
    """
    ctx.ensure_object(AppContext)
    if ctx.invoked_subcommand is None:
        from assistant.cli.chat import run_chat

        run_chat(ctx.obj.settings, conversation=None)


def _register() -> None:
    from assistant.cli import (
        chat,
        daemon,
        docs,
        eval,
        history,
        models,
        plugins,
        reroute,
        routing,
        users,
    )

    for module in (chat, daemon, docs, eval, history, models, plugins, reroute, routing, users):
        module.register(main)


_register()
