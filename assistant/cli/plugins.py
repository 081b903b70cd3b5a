"""`assistant plugins …` commands.

A running daemon is asked (``GET /api/plugins``): only it knows which skills its circuit
breakers set aside. With none running, ``list`` shows the plugins as this process loads them.
``install`` runs pip with the daemon's own interpreter, its dependencies pinned
(:mod:`assistant.cli.constraints`), and then ``reload``s the daemon (a restart in place,
in-flight replies finishing first); ``new`` writes a plugin to start from
(:mod:`assistant.cli.scaffold`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from assistant.cli import AppContext, pass_app
from assistant.errors import AssistantError


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
        if client.busy:
            raise client.busy_error()
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


@plugins_group.command("install", context_settings={"ignore_unknown_options": True})
@click.option("-e", "--editable", is_flag=True,
              help="Install the project at PATH in place: edits take effect on `plugins reload`.")
@click.option("--no-reload", is_flag=True, help="Leave the running daemon as it is.")
@click.argument("target", metavar="PATH|NAME")
@click.argument("pip_args", nargs=-1, type=click.UNPROCESSED, metavar="[PIP_ARGS]...")
@pass_app
def install(app: AppContext, editable: bool, no_reload: bool, target: str,
            pip_args: tuple[str, ...]) -> None:
    """Install a plugin into the daemon's own environment (`pip install` with the interpreter
    the running daemon uses, else this command's), then reload the daemon so that it serves the
    plugin at once. The daemon's own dependencies are pinned at their installed versions: a
    plugin that needs other versions of them is refused by pip. PIP_ARGS go to pip as they
    are, e.g. `-- --no-index --find-links DIR`."""
    from assistant.client import Client

    with Client(app.settings) as client:
        running = client.health() is not None
        if client.busy:
            raise client.busy_error()
        python = client.get("/api/status").get("python") if running else None
    python = python or sys.executable
    spec = str(Path(target).resolve()) if Path(target).exists() else target
    with tempfile.TemporaryDirectory(prefix="assistant-pins-") as scratch:
        pins = Path(scratch) / "daemon-constraints.txt"
        pins.write_text(_daemon_pins(python))
        command = [python, "-m", "pip", "install", "-c", str(pins),
                   *(["-e"] if editable else []), spec, *pip_args]
        click.echo(f"$ {' '.join(command)}", err=True)
        if subprocess.run(command).returncode != 0:
            raise AssistantError(
                f"pip could not install {target}",
                "Its output is above; nothing was installed or reloaded. pip ran with the "
                "daemon's own dependencies pinned at their installed versions (-c): a plugin "
                "that needs other versions of them cannot go into the daemon's environment.")
    if running and not no_reload:
        _reload(app)
    elif not running:
        click.echo("Installed; the daemon is not running and loads it when it starts.")


def _daemon_pins(python: str) -> str:
    """The constraints that keep the daemon's own dependencies as they are, read in the
    environment of ``python`` (:mod:`assistant.cli.constraints`)."""
    found = subprocess.run([python, "-m", "assistant.cli.constraints"], capture_output=True,
                           text=True, timeout=120)
    if found.returncode != 0 or not found.stdout.strip():
        raise AssistantError(
            f"cannot read the daemon's dependencies with {python}: "
            f"{(found.stderr.strip().splitlines() or ['no output'])[-1]}",
            "Nothing was installed: pip runs only with them pinned, so that a plugin cannot "
            "change them.")
    return found.stdout


@plugins_group.command("reload")
@pass_app
def reload(app: AppContext) -> None:
    """Restart the running daemon in place so that it loads the plugins installed now, and the
    current code of those installed with `-e`. In-flight replies finish first."""
    _reload(app)


def _reload(app: AppContext) -> None:
    from assistant.client import Client

    with Client(app.settings) as client:
        health = client.reload_daemon()
        if health is None:
            click.echo("The daemon is not running; it loads the installed plugins when it starts.")
            return
        infos: list[dict[str, Any]] = client.get("/api/plugins")["plugins"]
    loaded = [i["name"] for i in infos if i["status"] != "failed"]
    click.echo(f"daemon reloaded ({health['status']}): plugins {', '.join(loaded) or 'none'}")
    for info in infos:
        if info["status"] == "failed":
            click.echo(f"plugin {info['name']} failed: {info['error']}", err=True)


@plugins_group.command("new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Where to create assistant-NAME/.")
def new(name: str, parent: Path) -> None:
    """Write a working plugin to start from: assistant-NAME/ with skill NAME, an after_turn
    hook, tests on the test kit and a pyproject. Then: `assistant plugins install -e
    assistant-NAME` and `pytest assistant-NAME`."""
    from assistant.cli.scaffold import write_plugin

    root = write_plugin(name, parent)
    click.echo(f"created {root}")
    click.echo(f"next: assistant plugins install -e {root}")
    click.echo(f"      python -m pytest {root}")
