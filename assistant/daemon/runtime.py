"""The daemon's runtime dir: one instance per dir (a lock), its pid, socket and token files.

A lock file held for the daemon's life makes two daemons started at once resolve to exactly
one; the loser reports the winner. A socket or pid left by a killed daemon is stale whenever the
lock is free, and is replaced. The token (for the optional TCP listener) is new at each start,
created 0600.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from assistant.config import Settings
from assistant.errors import DaemonError
from assistant.locations import runtime_dir, socket_path


class RuntimeFiles:
    """The lock, pid, socket and token files of one runtime dir."""

    def __init__(self, settings: Settings) -> None:
        self.dir = runtime_dir(settings)
        self.lock = self.dir / "assistant.lock"
        self.pid = self.dir / "assistant.pid"
        self.socket = socket_path(settings)
        self.token = self.dir / "token"
        self.log = self.dir / "daemon.log"

    def running_pid(self) -> int | None:
        try:
            return int(self.pid.read_text().strip())
        except (OSError, ValueError):
            return None


@contextlib.contextmanager
def single_instance(files: RuntimeFiles) -> Iterator[None]:
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = files.running_pid()
            raise DaemonError(
                f"the daemon is already running (pid {pid}, socket {files.socket})",
                "Use `assistant daemon status`, or `assistant daemon stop` first.",
            ) from None
        # The lock is ours, so any socket or pid file here is left over from a killed daemon.
        for stale in (files.socket, files.pid):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        files.pid.write_text(f"{os.getpid()}\n")
        try:
            yield
        finally:
            for path in (files.socket, files.pid, files.token):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    finally:
        os.close(fd)


def write_token(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token
