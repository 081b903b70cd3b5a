"""`--help` of every command in the click tree, found by walking it (new commands included)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from assistant.cli import main


def walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                paths += walk(sub, (*path, name))
    return paths


COMMANDS = walk(main)


def test_the_tree_has_the_public_commands() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"models", "models list", "models pull", "models add", "models show",
            "models rm"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "assistant")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "Traceback" not in result.output
