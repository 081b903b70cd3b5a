"""`assistant serve` and `assistant daemon start|stop|status`."""

from __future__ import annotations

import json

import click

from assistant.cli import AppContext, pass_app
from assistant.cli.terminal import one_line
from assistant.config import KEEP_ALIVE_MAX, KEEP_ALIVE_MIN


@click.command()
@click.option("--tcp", metavar="HOST:PORT", help="Also listen on loopback TCP (token required).")
@click.option("--threads", type=int, help="Threads for the model host (default: all cores).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--preload", multiple=True, metavar="MODEL", help="Load this model at start.")
@pass_app
def serve(app: AppContext, tcp: str | None, threads: int | None, log_level: str | None,
          preload: tuple[str, ...]) -> None:
    """Run the daemon in the foreground; logs go to stderr as JSON lines."""
    from assistant.daemon.server import serve as run

    app.override("daemon", "tcp", tcp)
    app.override("daemon", "threads", threads)
    app.override("daemon", "log_level", log_level)
    app.override("models", "preload", list(preload) or None)
    run(app.settings)


@click.group()
def daemon() -> None:
    """Manage the background daemon."""


@daemon.command()
@pass_app
def start(app: AppContext) -> None:
    """Start the daemon in the background (nothing happens if it runs already)."""
    from assistant.client import Client

    with Client(app.settings) as client:
        was_running = client.health() is not None
        health = client.ensure_daemon()
    state = "already running" if was_running else "started"
    click.echo(f"daemon {state}: {health['status']}, version {health['version']}, "
               f"socket {client.socket}")


@daemon.command()
@pass_app
def stop(app: AppContext) -> None:
    """Stop the daemon, letting in-flight replies finish within the grace period."""
    from assistant.client import stop_daemon

    pid = stop_daemon(app.settings)
    click.echo("daemon not running" if pid is None else f"daemon stopped (pid {pid})")


@daemon.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Version, uptime, loaded models and their memory, queue depth, socket and llama.cpp
    version."""
    from assistant.cli.models import memory_text
    from assistant.client import Client

    with Client(app.settings) as client:
        client.require_daemon()
        info = client.get("/api/status")
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"status     {info['status']}")
    click.echo(f"version    {info['version']} (llama.cpp via llama-cpp-python "
               f"{info.get('llama_cpp') or 'not started'})")
    cpu = info.get("cpu_variant")
    click.echo("cpu        " + (f"{cpu['variant'] or 'built in'} ({cpu['reason']})" if cpu
                                else "no chat model loaded yet"))
    click.echo(f"pid        {info['pid']}   uptime {info['uptime_s']:.0f} s")
    click.echo(f"socket     {info['socket']}" + (f"   tcp {info['tcp']}" if info["tcp"] else ""))
    click.echo(f"queue      {info['queue_depth']}")
    click.echo(f"threads    {info['threads']}")
    models = info["models"] or []
    click.echo("models     " + (", ".join(
        f"{m['name']} ({m['kind']}, {'pinned, ' if m.get('pinned') else ''}"
        f"idle {m['idle_s']:.0f} s)" for m in models) or "none loaded"))
    for m in models:
        if m.get("memory"):  # an older daemon's status has none
            click.echo(f"memory     {m['name']}: {memory_text(m['memory'])}")
    for name, cache in (info.get("state_cache") or {}).items():
        ram, disk = cache["ram_bytes"] / 2**20, cache["disk_bytes"] / 2**20
        click.echo(f"states     {name}: {cache['entries']} saved ({ram:.0f} MB RAM, "
                   f"{disk:.0f} MB disk), {cache['hits']} hits, {cache['misses']} misses, "
                   f"{cache['evictions']} evictions")
    for engine in info.get("engines") or []:  # an older daemon's status has none
        count = len(engine["models"])
        click.echo(one_line(
            f"engine     {engine['name']}: {engine['state']} ({engine['base_url']}), "
            f"{count} model{'' if count == 1 else 's'}, queue {engine['queue']}"
            + (f", retry in {engine['retry_in_s']:.0f} s" if engine.get("retry_in_s") else "")))
    for problem in info.get("problems", []):
        click.echo(f"problem    {one_line(problem)}")  # plugin and exception text


@click.command("load")
@click.argument("name")
@click.option("--keep-alive", type=click.IntRange(KEEP_ALIVE_MIN, KEEP_ALIVE_MAX),
              help="Seconds to stay loaded when idle; -1 pins it.")
@pass_app
def load_model(app: AppContext, name: str, keep_alive: int | None) -> None:
    """Load a model into the daemon now (the daemon starts if needed)."""
    from assistant.client import Client

    with Client(app.settings, timeout=600) as client:
        client.ensure_daemon()
        if keep_alive is None:
            result = client.post(f"/api/models/{name}/load")
        else:
            result = client.post(f"/api/models/{name}/load", keep_alive=keep_alive)
    click.echo(f"{name} loaded ({result['kind']}) in {result['seconds']:.1f} s")


@click.command("unload")
@click.argument("name")
@pass_app
def unload_model(app: AppContext, name: str) -> None:
    """Unload a model from the running daemon, freeing its memory."""
    from assistant.client import Client

    with Client(app.settings) as client:
        client.require_daemon()
        result = client.post(f"/api/models/{name}/unload")
    click.echo(f"{name} unloaded" if result["unloaded"] else f"{name} was not loaded")


def register(main: click.Group) -> None:
    from assistant.cli.models import models_group

    main.add_command(serve)
    main.add_command(daemon)
    models_group.add_command(load_model)
    models_group.add_command(unload_model)
