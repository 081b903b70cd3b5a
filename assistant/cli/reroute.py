"""`assistant reroute MESSAGE_ID SKILL`: send a turn to another skill, through the daemon.

The daemon records the correction (similar utterances follow it from now on) and answers the
turn again with SKILL as a new branch beside the old reply, streamed like `assistant ask`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

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
    from assistant.client import Client, iter_sse, raise_for_error

    body: dict[str, Any] = {"skill": skill}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    with Client(app.settings) as client:
        client.ensure_daemon()

        def events() -> Iterator[dict[str, Any]]:
            with client.http.stream("POST", f"/api/messages/{quote(message_id, safe='')}/reroute",
                                    json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for_error(response)
                for _event, data in iter_sse(response.iter_lines()):
                    yield json.loads(data)

        result = _consume(events(), echo=not as_json)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
