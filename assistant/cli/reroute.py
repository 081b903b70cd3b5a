"""`assistant reroute MESSAGE_ID SKILL`: send a turn to another skill, through the daemon.

The daemon records the correction (similar utterances follow it from now on) and answers the
turn again with SKILL as a new branch beside the old reply, streamed like `assistant ask`.
"""

from __future__ import annotations

import json

import click

from assistant.cli import AppContext, pass_app


def register(main: click.Group) -> None:
    main.add_command(reroute)


@click.command("reroute")
@click.argument("message_id")
@click.argument("skill")
@click.option("--max-tokens", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@pass_app
def reroute(app: AppContext, message_id: str, skill: str, max_tokens: int | None,
            as_json: bool) -> None:
    """Answer the turn of reply MESSAGE_ID again with SKILL, and route such turns there."""
    from assistant.cli.chat import _consume
    from assistant.client import Client

    with Client(app.settings) as client:
        client.ensure_daemon()
        events = client.stream_reroute(message_id, skill, max_tokens=max_tokens)
        result = _consume(events, echo=not as_json)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
