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
    """A group that renders domain errors once, at the edge: ``error: …``, a hint, an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AssistantError as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(exc.hint, err=True)
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
    from assistant.cli import chat, daemon, docs, eval, history, models, plugins, routing

    for module in (chat, daemon, docs, eval, history, models, plugins, routing):
        module.register(main)


_register()
