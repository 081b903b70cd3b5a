"""`assistant plugins …` commands."""

from __future__ import annotations

import json

import click

from assistant.cli import AppContext, pass_app


def register(main: click.Group) -> None:
    main.add_command(plugins_group)


@click.group("plugins")
def plugins_group() -> None:
    """Installed plugins: what they add and whether they loaded."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of plugins.")
@pass_app
def list_plugins(app: AppContext, as_json: bool) -> None:
    """Every plugin: name, version, bundled or third-party, hooks, skills, status."""
    from assistant.plugins import load_plugins

    infos = load_plugins(app.settings).info()
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2, ensure_ascii=False))
        return
    if not infos:
        click.echo("No plugins installed.")
        return
    for info in infos:
        origin = "bundled" if info.bundled else "third-party"
        status = info.status + (f": {info.error}" if info.status != "loaded" else "")
        click.echo(f"{info.name} {info.version} ({origin}) — {status}")
        click.echo(f"  hooks:  {', '.join(info.hooks) or '-'}")
        click.echo(f"  skills: {', '.join(info.skills) or '-'}")
        if info.models:
            click.echo(f"  models: {', '.join(info.models)}")
