"""Symlinks planted in the data dir, leading out of it: the daemon writes nothing through them.

The data dir is 0700, so whoever plants a link there already runs as the user; but a data dir
restored from a backup, synced, or shared with another tool can carry links, and the daemon
must not turn one into a write anywhere the user can write. Each case plants a link to a file
or folder in ``outside/``, starts the real daemon, chats through it, stops it, and checks that
``outside/`` is exactly as it was and that the daemon said why it refused.

How we checked these fail without their protection (each taken out, the test run, the code
restored and ``git diff`` checked):
- ``check_store_paths`` (assistant/daemon/server.py) not called → the database test fails:
  SQLite creates ``outside/stolen.sqlite3`` through ``assistant.sqlite3``. In the WAL case
  SQLite 3 here refused the link itself ("unable to open database file"), so only the check
  for our message failed; older SQLite builds are not relied on.
- the host's ``_state_dir`` check (assistant/models/host.py) returning its argument → the
  states test fails: the reply's saved KV state is written into ``outside/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from assistant.testing import RunningDaemon, start_daemon

# Long enough (over 64 tokens) for the model host to save the conversation's state.
PROMPT = "Repeat these words: " + " ".join(["river", "stone", "cloud", "tree"] * 30)
CHAT = {"model": "smollm2-135m", "max_tokens": 2, "temperature": 0,
        "messages": [{"role": "user", "content": PROMPT}]}


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


def outside_with_victim(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "victim.txt").write_text("keep me\n")
    return outside


def run_one_turn(env: dict[str, str], log: Path) -> tuple[RunningDaemon, dict[str, object]]:
    daemon = start_daemon(env, log)
    try:
        with daemon.http(120) as http:
            http.post("/api/turns", json={"text": PROMPT, "skill": "chat", "max_tokens": 2})
            http.post("/v1/chat/completions", json=CHAT)
            assert http.get("/health").status_code == 200
            status = http.get("/api/status").json()
    finally:
        assert daemon.stop() == 0
    return daemon, status


@pytest.mark.parametrize("link", ["assistant.sqlite3", "assistant.sqlite3-wal"])
def test_database_symlinked_out_of_the_data_dir_is_refused(
    real_env: dict[str, str], tmp_path: Path, link: str
) -> None:
    data = Path(real_env["ASSISTANT_DATA_DIR"])
    if link != "assistant.sqlite3":
        run_one_turn(real_env, tmp_path / "first.log")  # a real database, closed cleanly
        assert (data / "assistant.sqlite3").is_file()
    outside = outside_with_victim(tmp_path)
    data.mkdir(parents=True, exist_ok=True)
    (data / link).symlink_to(outside / "stolen.sqlite3")
    before = snapshot(outside)
    _, status = run_one_turn(real_env, tmp_path / "daemon.log")
    assert snapshot(outside) == before, "SQLite wrote through a symlink out of the data dir"
    assert status["status"] == "degraded"
    problems = " ".join(map(str, status["problems"]))  # type: ignore[call-overload]
    assert "leads out of" in problems, problems


def test_saved_states_symlinked_out_of_the_data_dir_are_not_written(
    real_env: dict[str, str], tmp_path: Path
) -> None:
    data = Path(real_env["ASSISTANT_DATA_DIR"])
    outside = outside_with_victim(tmp_path)
    data.mkdir(parents=True, exist_ok=True)
    os.symlink(outside / "folder", data / "states")
    before = snapshot(outside)
    daemon, status = run_one_turn(real_env, tmp_path / "daemon.log")
    assert snapshot(outside) == before, "a saved state was written out of the data dir"
    assert status["status"] == "ready", status
    assert "leads out of" in daemon.log_text()


def test_the_cli_writes_nothing_through_planted_links(tmp_path: Path) -> None:
    """`history` and `models add` refuse planted links too, not only the daemon.

    How we checked it fails without its protection: with ``database_url``'s ``inside`` check
    removed, `assistant history list` created ``outside/stolen.sqlite3``; with the registry
    lock opened by ``Path.open("a")`` instead of ``open_own``, `models add` created
    ``outside/lock``.
    """
    from click.testing import CliRunner

    from assistant.cli import main
    from tests.conftest import TEST_MODELS_DIR

    data = Path(os.environ["ASSISTANT_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    outside = outside_with_victim(tmp_path)
    before = snapshot(outside)
    (data / "assistant.sqlite3").symlink_to(outside / "stolen.sqlite3")
    (data / ".models.json.lock").symlink_to(outside / "lock")

    listed = CliRunner().invoke(main, ["history", "list"])
    assert listed.exit_code != 0 and "leads out of" in listed.output
    added = CliRunner().invoke(main, ["models", "add", "--name", "mine",
                                      str(TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf")])
    assert added.exit_code != 0 and "symlink" in added.output
    assert "Traceback" not in listed.output + added.output
    assert snapshot(outside) == before
