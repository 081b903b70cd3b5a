"""`assistant models …`: list, pull, add, show and rm models.

``models_group`` is public so that other command modules can add to it (``load``/``unload``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from assistant.cli import AppContext, pass_app
from assistant.cli.terminal import one_line

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from assistant.models.registry import ModelStatus


@click.group("models")
def models_group() -> None:
    """Manage models: the offline catalog and your own GGUF / ONNX files."""


def register(main: click.Group) -> None:
    main.add_command(models_group)


def _size(nbytes: int | None) -> str:
    if not nbytes:
        return "-"
    value = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def memory_text(memory: dict[str, int]) -> str:
    """A model's planned memory (``Footprint.summary()``) in MiB, the memory budget's unit."""
    def mib(key: str) -> str:
        return f"{memory[key] / 2**20:.0f} MiB"

    if not memory.get("sequences"):  # an embedding model: its file alone
        return mib("total_bytes")
    return (f"{mib('total_bytes')} = file {mib('file_bytes')} + KV cache {mib('kv_bytes')} "
            f"({memory['sequences']} × {memory['context']} tokens) + saved states "
            f"{mib('state_bytes')}")


class _LineProgress:
    """Plain lines, for logs and pipes (``make``, CI)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.label = ""

    def begin(self, label: str, total: int) -> None:
        self.label = label

    def step(self, text: str) -> None:
        click.echo(f"{self.name}: {text}", err=True)

    def advance(self, nbytes: int) -> None:
        pass

    def end(self, text: str) -> None:
        click.echo(f"{self.name}: {self.label}: {text}", err=True)


class _BarProgress:
    """A byte progress bar per artifact on a terminal; the current step is its description."""

    def __init__(self, progress: Progress, name: str) -> None:
        self.progress = progress
        self.name = name
        self.task: TaskID | None = None
        self.label = ""

    def begin(self, label: str, total: int) -> None:
        self.label = label
        self.task = self.progress.add_task(self.name, total=total)

    def step(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=f"{self.name}: {text}")

    def advance(self, nbytes: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, nbytes)

    def end(self, text: str) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.progress.console.print(f"{self.name}: {self.label}: {text}", highlight=False)


@models_group.command("pull")
@click.argument("names", nargs=-1, required=True)
@click.option("-v", "--verbose", is_flag=True, help="Show pip's own output.")
@pass_app
def pull_cmd(app: AppContext, names: tuple[str, ...], verbose: bool) -> None:
    """Download catalog models NAMES, verify their sha256 and install them.

    Pulling a model that is already installed and verified does nothing.
    """
    import sys

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    from assistant.models.install import catalog_entry, pull

    settings = app.settings
    for name in names:
        catalog_entry(name)  # unknown names fail before anything is fetched
    console = Console(stderr=True)
    bar = console.is_terminal and not verbose
    for name in names:
        if not bar:
            paths = pull(settings, name, _LineProgress(name), verbose=verbose)
        else:
            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), TimeElapsedColumn(), console=console,
                          transient=True) as progress:
                paths = pull(settings, name, _BarProgress(progress, name), verbose=verbose)
        for path in paths:
            click.echo(f"{name}: {path}")
        sys.stdout.flush()


def _status_json(status: ModelStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "kind": status.kind,
        "source": status.source,
        "installed": status.installed,
        "default": status.default,
        "path": str(status.path),
        "size_bytes": status.size_bytes,
        "quantization": status.facts.get("quantization"),
        "context_length": status.facts.get("context_length"),
        "chat_template": status.facts.get("chat_template"),
        "description": status.description,
        "problem": status.problem,
        "facts": status.facts,
    }


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, one object per model.")
@pass_app
def list_cmd(app: AppContext, as_json: bool) -> None:
    """Every catalog model and every model you added, installed or not."""
    from assistant.models.registry import list_models

    statuses = list_models(app.settings)
    remote = _remote_models(app)
    if as_json:
        click.echo(json.dumps([_status_json(s) for s in statuses] + remote, indent=2))
        return
    header = ("", "NAME", "KIND", "SIZE", "QUANT", "CONTEXT", "TEMPLATE", "INSTALLED")
    rows = [header]
    for s in statuses:
        template = s.facts.get("chat_template")
        rows.append((
            "*" if s.default else "",
            s.name,
            s.kind,
            _size(s.size_bytes),
            str(s.facts.get("quantization") or "-"),
            str(s.facts.get("context_length") or "-"),
            "-" if template is None else ("yes" if template else "no"),
            ("yes" if s.installed else "no") + (f" ({s.problem})" if s.problem else ""),
        ))
    for m in remote:
        where = f"remote, engine {m['engine']}" + (f", {m['state']}" if m["state"] else "")
        rows.append(("*" if m["default"] else "", m["name"] or f"{m['engine']}/?", "chat", "-",
                     "-", "-", "-", where + (f" ({m['problem']})" if m["problem"] else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {3, 5}
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        click.echo(one_line("  ".join(cells).rstrip()))
    click.echo("\n* default (chat and embedding)")


def _remote_models(app: AppContext) -> list[dict[str, Any]]:
    """The models of each ``[engines.NAME]`` as the running daemon knows them (it holds the
    keys, in its environment, and each engine's state), else asked of each engine now. An
    engine that cannot tell its models gives a row with no name and the reason."""
    if not app.settings.engines:
        return []
    from assistant.client import Client

    with Client(app.settings) as client:
        running = client.health() is not None
        status = client.get("/api/status") if running else None
    defaults = {app.settings.models.default, app.settings.models.embedding}
    if status is not None and "engines" in status:  # an older daemon's status has none
        return [row for e in status["engines"] for row in _engine_rows(
            e["name"], e["models"], e["state"], e["error"], defaults)]
    from assistant.models.remote_wire import list_models as engine_models

    out: list[dict[str, Any]] = []
    for engine, settings in app.settings.engines.items():
        names, problem = engine_models(engine, settings)
        out += _engine_rows(engine, names, None,
                            None if problem is None else f"engine {engine} {problem}", defaults)
    return out


def _engine_rows(engine: str, names: list[str], state: str | None, problem: str | None,
                 defaults: set[str]) -> list[dict[str, Any]]:
    rows = [{"name": n, "kind": "chat", "source": "remote", "remote": True, "engine": engine,
             "state": state, "installed": True, "default": n in defaults, "problem": problem}
            for n in names]
    if problem is not None and not names:
        rows.append({"name": None, "kind": "chat", "source": "remote", "remote": True,
                     "engine": engine, "state": state, "installed": False, "default": False,
                     "problem": problem})
    return rows


_SHOW_KEYS = (
    ("path", "path"), ("kind", "kind"), ("source", "source"), ("format", "format"),
    ("architecture", "architecture"), ("parameters", "parameters"),
    ("context_length", "context"), ("embedding_length", "embedding length"),
    ("embedding_dimension", "embedding dimension"), ("quantization", "quantization"),
    ("chat_template", "template"), ("size_bytes", "size"), ("tokenizer_path", "tokenizer"),
    ("inputs", "inputs"), ("installed", "installed"), ("memory", "planned memory"),
    ("cpu_variant", "cpu variant"),
)


@models_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object; its `path` is the file.")
@pass_app
def show_cmd(app: AppContext, name: str, as_json: bool) -> None:
    """Where model NAME lives and what its file says about it."""
    from assistant.models.registry import describe

    info = describe(app.settings, name)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(one_line(info["name"]))
    for key, label in _SHOW_KEYS:
        value = info.get(key)
        if value is None:
            continue
        if key == "size_bytes":
            value = f"{_size(value)} ({value} bytes)"
        elif key == "parameters":
            value = f"{value:,}"
        elif key == "memory":
            value = memory_text(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        click.echo(f"  {label + ':':<22}{one_line(value)}")  # a model file's own words
    if not info.get("installed"):
        click.echo(f"\nNot installed: run `assistant models pull {name}`.")


@models_group.command("add")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", help="Name to use (default: the file name without its extension).")
@click.option("--tokenizer", type=click.Path(path_type=Path, dir_okay=False),
              help="tokenizer.json of an ONNX embedding model (default: beside the model).")
@pass_app
def add_cmd(app: AppContext, path: Path, name: str | None, tokenizer: Path | None) -> None:
    """Register a local .gguf or .onnx file in place (it is not copied)."""
    from assistant.models.registry import add

    record = add(app.settings, path, name=name, tokenizer=tokenizer)
    facts = record.facts
    click.echo(
        f"added {record.name} ({record.kind}, {facts.get('architecture') or facts.get('format')}"
        f", {_size(facts.get('size_bytes'))}): {record.path}"
    )


@models_group.command("rm")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting a catalog model.")
@pass_app
def rm_cmd(app: AppContext, name: str, yes: bool) -> None:
    """Forget a local model (its file stays), or delete a catalog model's files."""
    from assistant.models.registry import removal_plan, remove

    plan = removal_plan(app.settings, name)
    if plan.files and not yes:
        listing = "\n".join(f"  {p}" for p in plan.files)
        click.confirm(f"Delete these files of {name}?\n{listing}\n", abort=True)
    remove(app.settings, name)
    click.echo(plan.done_message)
