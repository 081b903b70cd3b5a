"""`assistant users add|list|revoke`: the users of a daemon shared over TCP.

They work on the store directly, so with the daemon stopped too; a running daemon checks a
user's token on every request, so a revoke holds from that user's next request. A token is
printed once, by `add`, and only its hash is kept: a lost token is replaced by revoking the
user and adding them again (their conversations and documents stay with the revoked user).
"""

from __future__ import annotations

import json

import click

from assistant.cli import AppContext, pass_app


def register(main: click.Group) -> None:
    main.add_command(users)


@click.group("users")
def users() -> None:
    """People who use this daemon over TCP, each with a token of their own.

    A user's token makes each request theirs: their conversations, documents and routing
    corrections, and no one else's. The Unix socket and the runtime token stay the owner's.
    """


@users.command("add")
@click.argument("name")
@pass_app
def add(app: AppContext, name: str) -> None:
    """Add user NAME and print their token, once (only a hash of it is stored)."""
    from assistant.cli.history import open_store

    with open_store(app) as store:
        user, token = store.users.add(name)
    click.echo(token)
    click.echo(f"Added user {user.name}. This token is shown once: give it to them now. "
               "They send it as `Authorization: Bearer TOKEN` to the daemon's TCP address.",
               err=True)


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_users(app: AppContext, as_json: bool) -> None:
    """The users, revoked ones too (never their tokens)."""
    from assistant.cli.history import open_store

    with open_store(app) as store:
        found = store.users.all()
    if as_json:
        click.echo(json.dumps([
            {"name": u.name, "created": u.created.isoformat(),
             "revoked": None if u.revoked is None else u.revoked.isoformat()}
            for u in found], ensure_ascii=False))
        return
    if not found:
        click.echo("No users: only the owner (the Unix socket, the runtime token).", err=True)
        return
    for u in found:
        state = "active" if u.revoked is None else f"revoked {u.revoked:%Y-%m-%d %H:%M}"
        click.echo(f"{u.name}\tadded {u.created:%Y-%m-%d %H:%M}\t{state}")


@users.command("revoke")
@click.argument("name")
@pass_app
def revoke(app: AppContext, name: str) -> None:
    """Revoke user NAME's token: refused from their next request, no restart needed."""
    from assistant.cli.history import open_store

    with open_store(app) as store:
        user = store.users.revoke(name)
    click.echo(f"Revoked user {user.name}; their token is refused from now on.", err=True)
