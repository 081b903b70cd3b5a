"""`assistant ask` and `assistant chat`: talk to the daemon from the terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import click

from assistant.cli import AppContext, pass_app
from assistant.cli.terminal import block
from assistant.confidence import is_low, percent
from assistant.config import Settings
from assistant.error_codes import from_event
from assistant.errors import AssistantError
from assistant.wire import TurnEvent


@click.command()
@click.argument("words", nargs=-1)
@click.option("--skill", help="Skip routing: use this skill.")
@click.option("--conversation", "conversation_id", help="Continue this conversation.")
@click.option("--model", help="Chat model (default: models.default).")
@click.option("--max-tokens", type=click.IntRange(min=1))
@click.option("--temperature", type=click.FloatRange(0, 2))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@pass_app
def ask(app: AppContext, words: tuple[str, ...], skill: str | None,
        conversation_id: str | None, model: str | None, max_tokens: int | None,
        temperature: float | None, as_json: bool) -> None:
    """Ask one question and stream the reply. A lone `-` reads standard input into it.

        cat notes.md | assistant ask "summarize this" -
    """
    parts = [sys.stdin.read() if w == "-" else w for w in words]
    text = "\n\n".join(p for p in parts if p.strip())
    if not text.strip():
        raise click.UsageError("nothing to ask: give the question as arguments, or `-` for stdin")
    from assistant.client import Client

    with Client(app.settings) as client:
        client.ensure_daemon()
        events = client.stream_turn(
            text, skill=skill, conversation_id=conversation_id, model=model,
            max_tokens=max_tokens, temperature=temperature,
        )
        result = _consume(events, echo=not as_json)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    _require_complete(result)


def _require_complete(result: dict[str, Any]) -> None:
    """A reply that did not complete (a skill cut by its timeout) is a failure: exit 1."""
    status = result.get("done", {}).get("status", "complete")
    if status == "complete":
        return
    if status == "blocked":  # the refusal, naming the guard, was the reply
        raise AssistantError("the turn was blocked by a guard; nothing was sent to a model",
                             "The reply above says which guard and why (docs/plugins.md).")
    notices = result.get("notices") or []
    why = f": {notices[-1]}" if notices else ""
    raise AssistantError(f"the reply is not complete ({status}){why}",
                         "Its partial text, if any, is stored in the conversation.")


def _consume(events: Iterable[TurnEvent], echo: bool) -> dict[str, Any]:
    text: list[str] = []
    result: dict[str, Any] = {}
    for event in events:
        if event["type"] == "delta":
            text.append(event["text"])
            if echo:
                # A reply may be steered (by a document, a page) into writing escape codes.
                click.echo(block(event["text"]), nl=False)
        elif event["type"] == "route":
            result["route"] = event
        elif event["type"] == "progress":
            if echo:
                click.echo(f"[{block(event['message'])}]", err=True)
        elif event["type"] == "notice":
            result.setdefault("notices", []).append(event["message"])
            if echo:  # not part of the reply: on stderr, as progress is
                click.echo(f"[{event['level']}: {block(event['message'])}]", err=True)
        elif event["type"] == "guard":
            result.setdefault("guard", []).append(event)
            if echo:  # what a guard did is said, on stderr as notices are
                click.echo(f"[guard {block(event['guard'])}: {event['action']}: "
                           f"{block(event['reason'])}]", err=True)
        elif event["type"] == "summary":
            if echo:
                click.echo(f"[the conversation outgrew the context: {event['covers']} earlier "
                           f"messages are now this summary (undo: assistant history undo "
                           f"{event['message_id']})]\n{block(event['text'])}\n", err=True)
        elif event["type"] == "citation":
            result.setdefault("citations", []).append(
                {k: v for k, v in event.items() if k != "type"})
        elif event["type"] == "done":
            result["done"] = event
            result["confidence"] = event.get("confidence")
        elif event["type"] == "error":
            if echo and text:
                click.echo()
            raise from_event(event)  # the caller's error, the daemon's, or the skill's
    if echo:
        click.echo()
        if is_low(result.get("confidence")):  # on stderr, and only when worth a second look
            click.echo(f"[low confidence: the model was {percent(result['confidence'])} sure "
                       "of this reply]", err=True)
    result["text"] = "".join(text)
    return result


def run_plain_chat(settings: Settings, conversation: str | None) -> None:
    """A line-by-line chat: `assistant chat --plain`, for terminals the UI cannot drive."""
    from assistant.client import Client

    with Client(settings) as client:
        client.ensure_daemon()
        click.echo(f"assistant — chatting with {settings.models.default}. "
                   "Ctrl-D to leave.", err=True)
        while True:
            try:
                line = input("> ")
            except EOFError:
                click.echo()
                return
            if not line.strip():
                continue
            try:
                result = _consume(client.stream_turn(line, conversation_id=conversation), True)
            except AssistantError as exc:
                click.echo(f"error: {exc.message}", err=True)
                continue
            conversation = result.get("done", {}).get("conversation_id", conversation)


def run_chat(settings: Settings, conversation: str | None, plain: bool = False) -> None:
    """The terminal UI (what `assistant` opens), or the line-based chat when asked for or
    when standard input or output is not a terminal."""
    if plain or not (sys.stdin.isatty() and sys.stdout.isatty()):
        run_plain_chat(settings, conversation)
        return
    from assistant.tui import run

    run(settings, conversation)


@click.command()
@click.option("--conversation", "conversation_id", help="Continue this conversation.")
@click.option("--plain", is_flag=True, help="A line-by-line chat instead of the full-screen UI.")
@pass_app
def chat(app: AppContext, conversation_id: str | None, plain: bool) -> None:
    """Chat in the terminal (what `assistant` with no command opens)."""
    run_chat(app.settings, conversation_id, plain)


def register(main: click.Group) -> None:
    main.add_command(ask)
    main.add_command(chat)
