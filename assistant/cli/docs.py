"""`assistant docs …`: add, list and remove the documents the qa skill answers from.

These open the store directly and embed in-process with MiniLM (as `assistant history` and
`assistant routing` do), so they work with or without a running daemon.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from assistant.cli import AppContext, pass_app
from assistant.cli.history import open_store
from assistant.cli.terminal import one_line
from assistant.errors import RequestError


def register(main: click.Group) -> None:
    main.add_command(docs)


@click.group("docs")
def docs() -> None:
    """Your documents, for questions answered with citations (the qa skill)."""


@docs.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_app
def add(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Add files or folders (.txt, .md, .html, .pdf). Files already indexed are skipped
    unless they changed, or were chunked by an older version of the assistant."""
    from assistant.documents.ingest import add_file, expand
    from assistant.embedding import MiniLMEmbedder
    from assistant.locations import models_dir

    embedder = MiniLMEmbedder(models_dir(app.settings, create=False))

    async def embed(texts: list[str]) -> list[list[float]]:
        return await embedder.embed(embedder.name, texts)

    files = list(expand(paths))
    lines: list[str] = []
    failed = 0
    err = sys.stderr
    with open_store(app) as store, click.progressbar(
            files, label="indexing", show_pos=True, file=err,
            item_show_func=lambda p: one_line(p.name) if p else "") as bar:
        for path in bar:
            outcome = asyncio.run(add_file(store, path, embed))
            if outcome.status in ("added", "updated"):
                lines.append(f"{outcome.status} {one_line(outcome.path)} "
                             f"({outcome.chunks} chunks)")
            elif outcome.status == "unchanged":
                lines.append(f"unchanged {one_line(outcome.path)}")
            else:
                failed += 1
                lines.append(f"skipped: {one_line(outcome.message)}")
    for line in lines:
        click.echo(line, err=True)
    if failed:
        raise click.exceptions.Exit(1)


@docs.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_app
def list_command(app: AppContext, as_json: bool) -> None:
    """List indexed documents."""
    with open_store(app) as store:
        rows = store.documents.all()
    for d in rows:
        if as_json:
            click.echo(json.dumps({"id": d.id, "path": d.path, "title": d.title,
                                   "chunks": d.chunks, "sha256": d.sha256,
                                   "added": d.added.isoformat()}, ensure_ascii=False))
        else:
            click.echo(f"{one_line(d.id[:8])}  {d.chunks:4d} chunks  {one_line(d.path)}")
    if not rows and not as_json:
        click.echo("No documents yet: `assistant docs add PATH…`.", err=True)


@docs.command("rm")
@click.argument("ident")
@pass_app
def rm(app: AppContext, ident: str) -> None:
    """Remove a document by id (or its first 6+ characters) or by path."""
    with open_store(app) as store:
        key = ident if len(ident) < 6 or not Path(ident).exists() else str(Path(ident).resolve())
        gone = store.documents.remove(key)
    if not gone:
        raise RequestError(f"No document with id or path {ident}.", status=404, code="not_found")
    for d in gone:
        click.echo(f"removed {one_line(d.path)}")
