"""The runtime dir's pid file counts only while a daemon holds its lock."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

from assistant.client import stop_daemon
from assistant.config import load_settings
from assistant.daemon.runtime import RuntimeFiles, single_instance


def test_a_pid_left_by_a_killed_daemon_is_not_signalled(isolated_env: dict[str, str]) -> None:
    """A daemon killed with SIGKILL leaves its pid file; the pid may since be another
    process's. ``daemon stop`` must not SIGTERM it."""
    files = RuntimeFiles(load_settings())
    files.dir.mkdir(parents=True, exist_ok=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        files.lock.touch()
        files.pid.write_text(f"{bystander.pid}\n")
        assert files.running_pid() is None
        assert stop_daemon(load_settings(), timeout=1) is None
        assert bystander.poll() is None  # alive: not signalled
    finally:
        bystander.kill()
        bystander.wait()


def test_the_pid_counts_while_the_lock_is_held(isolated_env: dict[str, str]) -> None:
    files = RuntimeFiles(load_settings())
    files.dir.mkdir(parents=True, exist_ok=True)
    with single_instance(files):
        assert files.running_pid() == os.getpid()
        assert files.locked()
    assert files.running_pid() is None and not files.locked()
    # held by another open file (another process, as the daemon is)
    fd = os.open(files.lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        files.pid.write_text("4242\n")
        assert files.running_pid() == 4242
    finally:
        os.close(fd)
