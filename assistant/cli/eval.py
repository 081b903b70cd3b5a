"""`assistant eval …`: measure a skill (or ``--baseline raw``, the bare model) on a set.

Runs in-process and daemon-less: the daemon's ModelManager starts its own model host child,
MiniLM embeds in this process. Sets are JSONL files (see :mod:`assistant.eval.data`); Tatoeba
TSV and SQuAD JSON are read as they come. Output: a table, or ``--json``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from assistant.cli import AppContext, pass_app

TASKS = ("translate", "summarize", "qa", "routing")


def register(main: click.Group) -> None:
    main.add_command(eval_command)
    main.add_command(perplexity_command)


@click.command("eval")
@click.argument("task", type=click.Choice(TASKS))
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-m", "--model", help="Chat model (default: the configured default).")
@click.option("--baseline", type=click.Choice(["raw", "both"]),
              help="raw: the bare model with a one-line prompt (qa: handed each item's "
                   "own context); both: skill and raw.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many items per file.")
@click.option("--every", type=click.IntRange(min=1), default=1, help="Every n-th item.")
@click.option("--docs", "docs", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="qa: files to index besides the items' contexts.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON, items included.")
@pass_app
def eval_command(
    app: AppContext, task: str, files: tuple[Path, ...], model: str | None,
    baseline: str | None, limit: int | None, every: int, docs: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Score TASK on FILES: chrF/BLEU, ROUGE-L, EM/F1 + citations + declines, or routing."""
    from assistant.eval.data import load_items

    items: list[dict[str, Any]] = []
    corpus: list[str] = []  # qa: every context of a file is indexed, not only the sampled
    for path in files:
        items += load_items(path, every=every, limit=limit)
        if task == "qa":
            corpus += [str(i["context"]) for i in load_items(path) if i.get("context")]
    reports = asyncio.run(_run(app, task, items, model or app.settings.models.default,
                               baseline, list(docs), corpus))
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], ensure_ascii=False, indent=2))
        return
    keys = list(dict.fromkeys(k for r in reports for k in r.scores))
    w = max([24, *map(len, keys)])
    click.echo(f"{'system':8} {'model':22} {'n':>4} " + " ".join(f"{k:>{w}}" for k in keys)
               + f" {'seconds':>8}")
    for r in reports:
        cells = " ".join(f"{r.scores[k]:>{w}.3f}" if k in r.scores else f"{'-':>{w}}"
                         for k in keys)
        click.echo(f"{r.system:8} {r.model:22} {len(r.items):>4} {cells} {r.seconds:>8.1f}")


async def _run(app: AppContext, task: str, items: list[dict[str, Any]], model: str,
               baseline: str | None, docs: list[Path], corpus: list[str]) -> list[Any]:
    from assistant.eval import runners
    from assistant.eval.backend import eval_backend

    systems = {"raw": [True], "both": [False, True], None: [False]}[baseline]
    reports = []
    async with eval_backend(app.settings) as eb:
        if task == "routing":
            from assistant.plugins import load_plugins

            skills = load_plugins(app.settings).available_skills()
            return [await runners.routing(eb, items, skills)]
        for raw in systems:
            if task == "translate":
                reports.append(await runners.translate(eb, items, model, raw))
            elif task == "summarize":
                reports.append(await runners.summarize(eb, items, model, raw))
            else:
                reports.append(await runners.qa(eb, items, model, raw, docs, corpus))
    return reports


@click.command("perplexity")
@click.argument("text_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-m", "--model", help="A GGUF model name (default: the configured default).")
@click.option("--max-tokens", type=click.IntRange(min=16), default=2048, show_default=True)
@pass_app
def perplexity_command(app: AppContext, text_file: Path, model: str | None,
                       max_tokens: int) -> None:
    """Perplexity of a model on TEXT_FILE (llama.cpp, in a child process)."""
    from assistant.models import registry

    record = registry.resolve(app.settings, model or app.settings.models.default)
    out = subprocess.run(
        [sys.executable, "-m", "assistant.eval.perplexity", str(record.path), str(text_file),
         str(max_tokens)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise click.ClickException(out.stderr.strip().splitlines()[-1] if out.stderr else
                                   "perplexity failed")
    click.echo(out.stdout.strip())
