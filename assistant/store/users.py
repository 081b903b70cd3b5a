"""The users of a shared daemon: a name and a token, of which only a hash is kept.

``assistant users add NAME`` makes a user and shows its token once; over TCP that token makes
each request the user's (:meth:`UserRepository.authenticate`, called by the daemon on every
request, so a revoke holds from the next one). A token is 32 random bytes, so a plain SHA-256
of it cannot be reversed or guessed: no salt or slow hash is needed, and a lookup by hash
stays one indexed read. A user is revoked, never deleted: its id is not reused, so a name
added again starts with nothing of the revoked user's. Reach it as ``store.users``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, exc, insert, select, update

from assistant.errors import InputError
from assistant.store.schema import UserRow

if TYPE_CHECKING:
    from assistant.store.repository import Store

U = cast(Table, UserRow.__table__)
TOKEN_PREFIX = "asu_"  # tells a user's token from the runtime token, in a file or a log
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class User:
    id: int  # the owner id of the user's conversations and documents (never 0)
    name: str
    created: datetime
    revoked: datetime | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _user(row: object) -> User:
    return User(row.id, row.name, row.created, row.revoked)  # type: ignore[attr-defined]


class UserRepository:
    """Adding, listing, revoking and recognising users on a :class:`Store`'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, name: str) -> tuple[User, str]:
        """A new user and its token (shown to the caller once; only its hash is stored)."""
        if not NAME.fullmatch(name):
            raise InputError(
                f"{name!r} is not a user name: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit.")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.store._now()
        try:
            with self.store._write() as conn:
                if conn.execute(select(U.c.id).where(U.c.name == name,
                                                     U.c.revoked.is_(None))).first():
                    raise InputError(f"There is already a user named {name!r}.",
                                     "Pick another name, or revoke that user first "
                                     f"(`assistant users revoke {name}`).")
                new_id = conn.execute(insert(U).values(
                    name=name, token_hash=token_hash(token), created=now,
                ).returning(U.c.id)).scalar_one()
        except exc.IntegrityError:  # another process added the name meanwhile
            raise InputError(f"There is already a user named {name!r}.") from None
        return User(int(new_id), name, now), token

    def all(self) -> list[User]:
        """Every user, revoked ones too, oldest first."""
        with self.store._read() as conn:
            rows = conn.execute(select(U.c.id, U.c.name, U.c.created, U.c.revoked)
                                .order_by(U.c.id)).all()
        return [_user(r) for r in rows]

    def revoke(self, name: str) -> User:
        """Revoke the user ``name``: its token is refused from the daemon's next request."""
        now = self.store._now()
        with self.store._write() as conn:
            row = conn.execute(select(U.c.id, U.c.name, U.c.created, U.c.revoked)
                               .where(U.c.name == name, U.c.revoked.is_(None))).first()
            if row is None:
                raise InputError(f"No user named {name!r}.",
                                 "See `assistant users list` for the users there are.")
            conn.execute(update(U).where(U.c.id == row.id).values(revoked=now))
        return User(row.id, row.name, row.created, now)

    def authenticate(self, token: str) -> User | None:
        """The user whose token this is, unless revoked; None for any other token."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        with self.store._read() as conn:
            row = conn.execute(select(U.c.id, U.c.name, U.c.created, U.c.revoked)
                               .where(U.c.token_hash == token_hash(token),
                                      U.c.revoked.is_(None))).first()
        return None if row is None else _user(row)
