"""What the daemon says of itself: ``/health`` (answered at once) and ``/api/status``."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistant import __version__

if TYPE_CHECKING:
    from pathlib import Path

    from assistant.daemon.model_manager import ModelManager

HOST_INFO_TTL_S = 1.0


@dataclass
class Access:
    """Who may talk to the daemon: the Unix socket's owner, or over TCP with the token."""

    token: str | None = None
    allowed_hosts: set[str] = field(default_factory=set)
    tcp_address: str | None = None


class DaemonStatus:
    """The daemon's state (``starting`` → ``ready`` or ``degraded``), its problems, and the
    model host's own account of itself.

    ``problems`` holds what went wrong at start-up; ``live_problems`` says what is wrong now
    (a skill its breaker set aside): both are reported, and either makes the state
    ``degraded``.
    """

    def __init__(self, models: ModelManager, socket: Path, access: Access,
                 live_problems: Callable[[], list[str]] = list) -> None:
        self.models = models
        self.socket = socket
        self.access = access
        self.state = "starting"
        self.started_at = time.time()
        self.problems: list[str] = []
        self.live_problems = live_problems
        self._host_info: dict[str, Any] = {}
        self._host_info_at = 0.0
        self._host_info_task: asyncio.Task[None] | None = None

    def current(self) -> tuple[str, list[str]]:
        """The state and every problem, now."""
        problems = [*self.problems, *self.live_problems()]
        state = "degraded" if self.state == "ready" and problems else self.state
        return state, problems

    def health(self) -> dict[str, Any]:
        host = self.cached_host_info()
        resident = self.models.status()
        return {
            "status": self.current()[0], "version": __version__,
            "started_at": self.started_at,
            "models": [r["name"] for r in resident],
            "memory": {r["name"]: r["memory"]["total_bytes"] for r in resident},
            "state_cache": host.get("state_cache", {}),
            "cpu_variant": host.get("cpu_variant"),
            # Each remote engine's state as its last request or listing left it: never asked
            # here, so a slow engine cannot slow /health.
            "engines": {e["name"]: e["state"] for e in self.models.engines.status()},
        }

    async def status(self) -> dict[str, Any]:
        info = await self.host_info()
        if info:  # /health's copy is fresh too
            self._host_info, self._host_info_at = info, time.monotonic()
        models = self.models
        state, problems = self.current()
        return {
            "status": state, "version": __version__, "pid": os.getpid(),
            "python": sys.executable, "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "socket": str(self.socket), "tcp": self.access.tcp_address,
            "models": models.status(),
            "queue_depth": sum(q.depth for q in models.queues.values()),
            "host_pid": models.host.pid, "llama_cpp": info.get("llama_cpp"),
            "cpu_variant": info.get("cpu_variant"),
            "state_cache": info.get("state_cache", {}),
            "threads": models.threads, "engines": models.engines.status(),
            "problems": problems,
        }

    async def host_info(self) -> dict[str, Any]:
        """What the model host says of itself (answered at once, even mid-reply); {} if none."""
        if self.models.host.pid is None:
            return {}
        try:
            return await asyncio.wait_for(self.models.host.call("info"), 5)
        except Exception:
            return {}

    def cached_host_info(self) -> dict[str, Any]:
        """The host's last answer to ``info``, refreshed in the background once it is older
        than :data:`HOST_INFO_TTL_S`: /health never waits on the host, which may be starting,
        busy loading or stuck."""
        stale = time.monotonic() - self._host_info_at > HOST_INFO_TTL_S
        if stale and self._host_info_task is None:
            self._host_info_task = asyncio.create_task(self._refresh_host_info())
        return self._host_info

    async def _refresh_host_info(self) -> None:
        try:
            info = await self.host_info()
            if info or self.models.host.pid is None:  # a stuck host keeps its last answer
                self._host_info = info
            self._host_info_at = time.monotonic()
        finally:
            self._host_info_task = None
