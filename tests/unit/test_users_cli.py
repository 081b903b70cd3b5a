"""`assistant users add|list|revoke` through click's CliRunner, on the test data dir's store
(no daemon): a token printed once and stored hashed, never listed; clear errors."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from click.testing import CliRunner, Result

from assistant.cli import main
from assistant.config import load_settings
from assistant.store import Store, db


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["users", *args], catch_exceptions=False)


def test_add_prints_the_token_once_and_list_never_shows_it() -> None:
    added = run("add", "alice")
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("asu_") and "shown once" in added.stderr
    listed = run("list")
    assert listed.exit_code == 0 and "alice" in listed.stdout and "active" in listed.stdout
    assert token not in listed.output
    as_json = json.loads(run("list", "--json").stdout)
    assert [(u["name"], u["revoked"]) for u in as_json] == [("alice", None)]
    assert token not in json.dumps(as_json)
    file = Path(os.environ["ASSISTANT_DATA_DIR"]) / db.DB_FILENAME
    with sqlite3.connect(file) as conn:  # nowhere in the database in plain text
        assert token not in repr(conn.execute("SELECT * FROM users").fetchall())
    store = Store.open(load_settings())
    try:
        user = store.users.authenticate(token)
        assert user is not None and user.name == "alice"
    finally:
        store.close()


def test_revoke_and_bad_names_say_what_is_wrong() -> None:
    assert run("list").stderr.startswith("No users")
    token = run("add", "bob").stdout.strip()
    again = run("add", "bob")
    assert again.exit_code == 1
    assert "error: There is already a user named 'bob'." in again.stderr
    assert "Traceback" not in again.output
    bad = run("add", "bob smith")
    assert bad.exit_code == 1 and "is not a user name" in bad.stderr
    revoked = run("revoke", "bob")
    assert revoked.exit_code == 0 and "Revoked user bob" in revoked.stderr
    assert "revoked" in run("list").stdout
    unknown = run("revoke", "bob")
    assert unknown.exit_code == 1 and "error: No user named 'bob'." in unknown.stderr
    store = Store.open(load_settings())
    try:
        assert store.users.authenticate(token) is None
    finally:
        store.close()
