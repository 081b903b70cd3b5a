"""The daemon's runtime dir: one instance per dir (a lock), its pid, socket and token files.

A lock file held for the daemon's life makes two daemons started at once resolve to exactly
one; the loser reports the winner. A socket or pid left by a killed daemon is stale whenever the
lock is free, and is replaced. The token (for the optional TCP listener) is new at each start,
created 0600; a reload (the daemon exec'ing itself, same pid) keeps it, so that TCP clients
holding it are not locked out. The token never leaves the file: the process marks the reload
in its environment with its own pid, and the process it becomes reads the mark, removes it,
and re-reads the file it left in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from assistant.config import Settings
from assistant.errors import DaemonError
from assistant.locations import runtime_dir, socket_path

TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


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
        """The running daemon's pid; None when none runs. A pid file left by a killed daemon
        names a process that may since have been given its pid: it counts only while the
        runtime dir's lock is held (``daemon stop`` would otherwise signal that process)."""
        try:
            pid = int(self.pid.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self.locked() else None

    def locked(self) -> bool:
        """Whether a daemon holds the runtime dir's lock."""
        try:
            fd = os.open(self.lock, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # a lock taken here goes with it
        return False


# Set to this process's pid just before it execs itself for a reload.
RELOAD_MARK = "ASSISTANT_RELOADING_PID"


@contextlib.contextmanager
def single_instance(files: RuntimeFiles) -> Iterator[list[Path]]:
    """Hold the runtime dir's lock. Yields the files removed on the way out (the socket, the
    pid and the token): the caller takes the token off it to keep the token for a reload."""
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = files.running_pid()
            deadline = time.monotonic() + 2.0
            while pid is None and files.locked() and time.monotonic() < deadline:
                time.sleep(0.02)  # the daemon that won has the lock, not yet its pid file
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
        leftovers = [files.socket, files.pid, files.token]
        try:
            yield leftovers
        finally:
            for path in leftovers:
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


def mark_reload() -> None:
    """Say to the process this one execs into that it is this daemon reloaded."""
    os.environ[RELOAD_MARK] = str(os.getpid())


def reloaded() -> bool:
    """Whether this process is a daemon reloaded in place (exec'd by itself, so the same pid).
    Removes the mark, so that no child process inherits it; call it first thing."""
    return os.environ.pop(RELOAD_MARK, None) == str(os.getpid())


def kept_token(path: Path) -> str | None:
    """The token the daemon before a reload left in ``path``, if it is still one: a regular
    file of ours that no one else may read or write, holding a token; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() \
                or info.st_mode & 0o077:
            return None
        token = fh.read(100).strip()
    return token if TOKEN.fullmatch(token) else None
