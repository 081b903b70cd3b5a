"""`assistant plugins …` commands.

A running daemon is asked (``GET /api/plugins``): only it knows which skills its circuit
breakers set aside. With none running, ``list`` shows the plugins as this process loads them.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

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
    """Every plugin: name, version, bundled or third-party, hooks, skills, guards, status, and each
    skill's state in the running daemon (available, disabled with the last error, retrying)."""
    from assistant.client import Client

    with Client(app.settings) as client:
        running = client.health() is not None
        found = client.get("/api/plugins") if running else None
    if found is not None:
        infos: list[dict[str, Any]] = found["plugins"]
    else:
        from assistant.plugins import load_plugins

        infos = [i.to_dict() for i in load_plugins(app.settings).info()]
    if as_json:
        click.echo(json.dumps(infos, indent=2, ensure_ascii=False))
        return
    if not running:
        click.echo("(the daemon is not running: plugins as this command loads them)", err=True)
    if not infos:
        click.echo("No plugins installed.")
        return
    for info in infos:
        origin = "bundled" if info["bundled"] else "third-party"
        status = info["status"] + (f": {info['error']}" if info["status"] != "loaded" else "")
        click.echo(f"{info['name']} {info['version']} ({origin}) — {status}")
        click.echo(f"  hooks:  {', '.join(info['hooks']) or '-'}")
        health = info.get("health") or {}
        skills = [_skill_text(name, health.get(name)) for name in info["skills"]]
        click.echo(f"  skills: {', '.join(skills) or '-'}")
        if info["models"]:
            click.echo(f"  models: {', '.join(info['models'])}")
        if info.get("guards"):  # an older daemon's answer has none
            click.echo(f"  guards: {', '.join(info['guards'])}")


def _skill_text(name: str, health: dict[str, Any] | None) -> str:
    if not health or health["state"] == "available":
        return name
    if health["state"] == "retrying":
        return f"{name} (retrying: the next turn is a trial; last error: {health['error']})"
    retry = health.get("retry_in_s")
    when = f"retried in {retry:.0f} s" if retry is not None else "until enabled"
    return (f"{name} (disabled after {health['failures']} failures, {when}; "
            f"last error: {health['error']})")


@plugins_group.command("enable")
@click.argument("name")
@pass_app
def enable(app: AppContext, name: str) -> None:
    """Re-arm skill NAME, or every skill and the hooks of plugin NAME, in the running daemon
    (a skill its circuit breaker disabled takes turns again at once)."""
    from assistant.client import Client

    with Client(app.settings) as client:
        if client.health() is None:
            click.echo("The daemon is not running; it starts with every skill enabled.")
            return
        result = client.post(f"/api/plugins/{quote(name, safe='')}/enable")
    click.echo(f"enabled: {', '.join(result['enabled'])}")
