"""The ``register_commands`` hook runs when the CLI looks its commands up; failures are isolated."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from assistant import plugins
from assistant.cli import AssistantGroup, main
from assistant.hookspecs import hookimpl
from assistant.plugins import PluginHost


class Greeter:
    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("greet")
        def greet() -> None:
            """Say hello (a plugin's command)."""
            click.echo("hello from a plugin")


class Broken:
    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginHost]:
    host = PluginHost()
    host.entry_points_loaded = True
    host.register(Broken(), "broken")
    host.register(Greeter(), "greeter")
    monkeypatch.setattr(plugins, "_host", host)
    monkeypatch.setattr(AssistantGroup, "_plugins_added", False)
    yield host
    main.commands.pop("greet", None)


def test_plugin_commands_are_added_and_a_failing_plugin_is_reported(host: PluginHost) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["greet"])
    assert result.exit_code == 0, result.output
    assert "hello from a plugin" in result.output
    assert "plugin 'broken' failed in register_commands" in result.output
    listing = runner.invoke(main, ["--help"])
    assert listing.exit_code == 0 and "greet" in listing.output and "history" in listing.output
    assert runner.invoke(main, ["plugins", "--help"]).exit_code == 0
