"""`assistant history …`: list, show, rename, archive, pin, delete, search, export, import.

Each command is a thin shell over one :class:`~assistant.store.Store` method, so it can later go
through the daemon's API instead of opening the store itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from assistant.cli import AppContext, pass_app
from assistant.cli.terminal import block, one_line
from assistant.errors import RequestError

if TYPE_CHECKING:
    from assistant.store import Store

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"]


@contextlib.contextmanager
def open_store(app: AppContext) -> Iterator[Store]:
    from assistant.store import Store

    # The daemon runs quick_check when it starts; a command skips it (0.4 s at 100,000
    # messages). Damage it meets is still reported, by the read that meets it.
    store = Store.open(app.settings, check=False)
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def interrupt_sets() -> Iterator[threading.Event]:
    """An event Ctrl-C sets while in this block, instead of raising KeyboardInterrupt: raised
    in SQLite's progress handler, sqlite3 swallowed it and the search failed as "the store
    failed: interrupted". Set, it stops the search as a client leaving does."""
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def _aware(moment: datetime | None) -> datetime | None:
    """Dates typed at the prompt are local time."""
    return None if moment is None else moment.astimezone()


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


@click.group("history")
def history() -> None:
    """Browse, search, export and import conversations."""


@history.command("list")
@click.option("--archived", "archived", flag_value="only", help="Only archived ones.")
@click.option("--all", "archived", flag_value="all", help="Archived ones too.")
@click.option("--pinned", is_flag=True, help="Only pinned ones.")
@click.option("--skill", help="Only those with a reply by this skill.")
@click.option("--since", type=click.DateTime(DATE_FORMATS), help="Active on or after.")
@click.option("--until", type=click.DateTime(DATE_FORMATS), help="Started before.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_app
def list_command(
    app: AppContext, archived: str | None, pinned: bool, skill: str | None,
    since: datetime | None, until: datetime | None, limit: int, as_json: bool,
) -> None:
    """List conversations, pinned first, then the most recent."""
    which = {"only": True, "all": None}.get(archived or "", False)
    with open_store(app) as store:
        rows = store.list_conversations(
            archived=which, pinned=True if pinned else None, skill=skill,
            since=_aware(since), until=_aware(until), limit=limit,
        )
    for row in rows:
        if as_json:
            click.echo(json.dumps({
                "id": row.id, "title": row.title, "created": row.created.isoformat(),
                "updated": row.updated.isoformat(), "archived": row.archived,
                "pinned": row.pinned, "messages": row.message_count,
            }, ensure_ascii=False))
            continue
        marks = ("📌 " if row.pinned else "") + ("[archived] " if row.archived else "")
        click.echo(f"{one_line(row.id)}  {_when(row.updated)}  {row.message_count:>4}  "
                   f"{marks}{one_line(row.title)}")
    if not rows and not as_json:
        click.echo("No conversations.", err=True)


@history.command("show")
@click.argument("conversation_id")
@click.option("--tree", is_flag=True, help="Every branch, indented, not just the active path.")
@click.option("--json", "as_json", is_flag=True, help="Our JSON export of it.")
@pass_app
def show(app: AppContext, conversation_id: str, tree: bool, as_json: bool) -> None:
    """Show a conversation's active path (or its whole tree)."""
    with open_store(app) as store:
        if as_json:
            click.echo(store.export([conversation_id], format="json"), nl=False)
            return
        conv = store.get_conversation(conversation_id)
    click.echo(click.style(one_line(conv.title), bold=True)
               + f"  ({one_line(conv.id)}, {_when(conv.created)})")
    active = {m.id for m in conv.active_path}

    def render(message_id: str | None, depth: int) -> None:
        for msg in conv.children(message_id):
            if not tree and msg.id not in active:
                continue
            marker = "*" if tree and msg.id in active else " "
            label = msg.role + (f" · {msg.skill}" if msg.skill else "")
            if msg.status != "complete":
                label += f" · {msg.status}"
            indent = "  " * depth if tree else ""
            click.echo(f"\n{indent}{marker}[{one_line(label)}] {one_line(msg.id)}")
            # Split on newlines only: str.splitlines would also break at NEL, VT, FF and the
            # Unicode separators, which block() shows as escapes instead.
            for line in block(msg.content or "").split("\n"):
                click.echo(f"{indent}  {line}")
            render(msg.id, depth + 1)

    render(None, 0)


@history.command("rename")
@click.argument("conversation_id")
@click.argument("title")
@pass_app
def rename(app: AppContext, conversation_id: str, title: str) -> None:
    """Give a conversation a new title."""
    with open_store(app) as store:
        store.rename(conversation_id, title)


@history.command("archive")
@click.argument("conversation_id")
@click.option("--undo", is_flag=True, help="Bring it back from the archive.")
@pass_app
def archive(app: AppContext, conversation_id: str, undo: bool) -> None:
    """Archive a conversation (hidden from the list, still searchable)."""
    with open_store(app) as store:
        store.archive(conversation_id, archived=not undo)


@history.command("pin")
@click.argument("conversation_id")
@click.option("--undo", is_flag=True, help="Unpin it.")
@pass_app
def pin(app: AppContext, conversation_id: str, undo: bool) -> None:
    """Pin a conversation to the top of the list."""
    with open_store(app) as store:
        store.pin(conversation_id, pinned=not undo)


@history.command("undo")
@click.argument("message_id")
@click.option("--redo", is_flag=True, help="Put the summary back in force.")
@pass_app
def undo(app: AppContext, message_id: str, redo: bool) -> None:
    """Undo a compaction summary: the model is given the turns it stood for again.

    When a conversation outgrows the model's context, its older turns are folded into a
    summary message (shown by `history show`); the turns themselves are kept.
    """
    with open_store(app) as store:
        message = store.set_summary_undone(message_id, undone=not redo)
    click.echo(f"summary {one_line(message.id)}: {'in force' if redo else 'undone'}")


@history.command("delete")
@click.argument("conversation_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def delete(app: AppContext, conversation_id: str, yes: bool) -> None:
    """Delete a conversation and all its messages, for good."""
    with open_store(app) as store:
        conv = store.get_conversation(conversation_id)
        if not yes:
            click.confirm(
                f"Delete \"{one_line(conv.title)}\" and its {len(conv.messages)} messages?",
                abort=True,
            )
        store.delete(conversation_id)
    _forget_states(app, conversation_id)
    click.echo(f"Deleted {conversation_id}.", err=True)


def _forget_states(app: AppContext, conversation_id: str) -> None:
    """The model states saved from the conversation go too: through a running daemon (whose
    model host may hold them in memory), else straight from the data dir."""
    from assistant.client import Client
    from assistant.locations import data_dir
    from assistant.models.kv_cache import forget_on_disk

    with Client(app.settings) as client:
        if client.forget_states(conversation_id):
            return
    forget_on_disk(data_dir(app.settings) / "states", conversation_id)


def highlighted(snippet: str, marks: tuple[str, str], start: str, end: str) -> str:
    """``snippet`` safe to print, each match the store wrapped in ``marks`` (two private-use
    characters) shown between ``start`` and ``end``. Only an opening mark closed before the
    next one is a match; any other mark is the message's own text and printed as an escape,
    so stored text cannot place the style's escape codes."""
    def safe(text: str) -> str:
        return one_line(text).replace(marks[0], "\\ue000").replace(marks[1], "\\ue001")

    out, at = [], 0
    for match in re.finditer(f"{marks[0]}([^{marks[0]}{marks[1]}]*){marks[1]}", snippet):
        out += [safe(snippet[at:match.start()]), start, safe(match[1]), end]
        at = match.end()
    return "".join([*out, safe(snippet[at:])])


@history.command("search")
@click.argument("query", nargs=-1, required=True)
@click.option("--skill", help="Only replies by this skill and the questions they answer.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True)
@pass_app
def search(app: AppContext, query: tuple[str, ...], skill: str | None, limit: int) -> None:
    """Search every message, best matches first.

    Bounded as the daemon's search is (``[search]``): at most max_query_chars characters and
    max_terms words, stopped after timeout seconds."""
    from assistant.store.search import check_query

    text, limits = " ".join(query), app.settings.search
    check_query(text, max_chars=limits.max_query_chars, max_terms=limits.max_terms,
                name="QUERY")
    marks = ("\ue000", "\ue001")
    start, end = ("\x1b[1;33m", "\x1b[0m") if sys.stdout.isatty() else ("**", "**")
    with open_store(app) as store, interrupt_sets() as cancel:
        hits = store.search(text, skill=skill, limit=limit, highlight=marks,
                            timeout=limits.timeout, cancel=cancel)
    for hit in hits:
        label = hit.role + (f" · {hit.skill}" if hit.skill else "")
        click.echo(f"{one_line(hit.conversation_id)}  {_when(hit.created)}  "
                   f"{one_line(hit.conversation_title)}  [{one_line(label)}]")
        click.echo("    " + highlighted(" ".join(hit.snippet.split()), marks, start, end))
    if not hits:
        click.echo("No matches.", err=True)


@history.command("export")
@click.argument("conversation_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every conversation.")
@click.option("--format", "fmt", type=click.Choice(["json", "md"]), default="json",
              show_default=True, help="json: lossless, for import; md: for reading.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@pass_app
def export(
    app: AppContext, conversation_ids: tuple[str, ...], everything: bool, fmt: str,
    output: Path | None,
) -> None:
    """Export conversations by ID, or --all."""
    if bool(conversation_ids) == everything:
        raise click.UsageError("Give conversation IDs or --all (not both).")
    with open_store(app) as store:
        chunks = store.export_chunks(None if everything else list(conversation_ids),
                                     format=fmt)
        if output is None:
            for chunk in chunks:
                click.echo(chunk, nl=False)
            return
        write_private(output, chunks)
    click.echo(f"Wrote {one_line(output)}.", err=True)


def write_private(output: Path, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to ``output``, readable by its owner only (0600), all or nothing.

    The temporary file beside it is made by :func:`tempfile.mkstemp`: a new random name,
    opened ``O_CREAT | O_EXCL | O_NOFOLLOW`` with mode 0600, so a file or symlink planted
    there (``out.json.part`` → a victim) is never opened, let alone written through. The
    rename then replaces ``output`` itself, a symlink included, never what it points to.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part",
                                    dir=output.parent)
    except OSError as exc:
        raise RequestError(f"Cannot write {output}: {exc.strerror}.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(name, output)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(name)
        if isinstance(exc, OSError):
            raise RequestError(f"Cannot write {output}: {exc.strerror}.") from None
        raise


@history.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["auto", "json", "chatgpt"]),
              default="auto", show_default=True,
              help="json: our export; chatgpt: ChatGPT's conversations.json.")
@pass_app
def import_command(app: AppContext, file: str, fmt: str) -> None:
    """Import conversations from FILE, all or nothing."""
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise RequestError(f"Cannot read {file}: {exc.strerror}.") from None
    with open_store(app) as store:
        result = store.import_data(data, format=fmt)
    click.echo(f"Imported {len(result.imported)} conversation(s)"
               + (f", skipped {len(result.skipped)} already present" if result.skipped else "")
               + ".")


def register(main: click.Group) -> None:
    main.add_command(history)
