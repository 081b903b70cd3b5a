"""The event loop's watchdog: a thread that notices when the loop stops turning, and names
whose code held it.

Hooks, and skills that run on the daemon's loop (``own_loop = False``: the bundled ones, or a
plugin's that needs the daemon's asyncio objects), share the daemon's one event loop; a blocking
call in one (``time.sleep``, a blocking HTTP client, a long CPU loop) stalls every client and
keeps the skill timeout from firing (other skills run on threads of their own:
:mod:`assistant.skill_thread`). The loop ticks a heartbeat every :data:`TICK_S`; when the beat
is older than ``blocked_after`` seconds, the thread reads the loop thread's stack, finds the
innermost frame of plugin code (:meth:`~assistant.plugins.PluginHost.owner`) and logs a
warning naming the plugin and the line, with the stack. When the loop turns again, the time it
was held is logged, and a third-party plugin that held it becomes a problem of ``/api/status``
and ``assistant daemon status`` until the daemon restarts (the bundled plugins' and the core's
blocks are logged only).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.plugins import PluginInfo

log = logging.getLogger("assistant.daemon.watchdog")

TICK_S = 0.25
BLOCKED_AFTER_S = 2.0


@dataclass
class Block:
    """One time the loop was held: by whom (None: no plugin's code), where, for how long."""

    plugin: str | None
    bundled: bool
    where: str
    stack: str
    seconds: float = 0.0


class LoopWatchdog:
    """Watch the running loop from a thread of its own; :meth:`start` on the loop, :meth:`stop`
    before it closes. ``owner`` maps a module name to the plugin it belongs to."""

    def __init__(self, owner: Callable[[str], PluginInfo | None],
                 blocked_after: float = BLOCKED_AFTER_S) -> None:
        self.owner = owner
        self.blocked_after = blocked_after
        self.blocks: dict[str, Block] = {}  # the last block of each third-party plugin
        self._beat = time.monotonic()
        self._loop_thread: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def problems(self) -> list[str]:
        return [f"plugin '{b.plugin}' blocked the daemon's event loop for {b.seconds:.1f} s "
                f"({b.where}): every client waited; await, or move blocking work to "
                "asyncio.to_thread" for b in self.blocks.values()]

    async def _tick(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(TICK_S)

    def _watch(self) -> None:
        current: Block | None = None
        while not self._stop.wait(TICK_S):
            held = time.monotonic() - self._beat
            if current is None and held > self.blocked_after:
                current = self._blame(held)
            elif current is not None and held < self.blocked_after:
                self._released(current)
                current = None
            if current is not None:
                current.seconds = max(current.seconds, held)

    def _blame(self, held: float) -> Block:
        frame = sys._current_frames().get(self._loop_thread or 0)
        block = Block(None, False, "unknown", "", held)
        innermost: FrameType | None = frame
        while frame is not None:
            info = self.owner(frame.f_globals.get("__name__", ""))
            if info is not None:
                block = Block(info.name, info.bundled, _where(frame), "", held)
                break
            frame = frame.f_back
        if block.plugin is None and innermost is not None:
            block.where = _where(innermost)
        if innermost is not None:
            block.stack = "".join(traceback.format_stack(innermost))
        log.warning("the event loop has been blocked for %.1f s by %s at %s", held,
                    f"plugin {block.plugin}" if block.plugin else "code of no plugin",
                    block.where, extra={"plugin": block.plugin, "stack": block.stack})
        return block

    def _released(self, block: Block) -> None:
        log.warning("the event loop turns again after %.1f s blocked by %s", block.seconds,
                    f"plugin {block.plugin}" if block.plugin else "code of no plugin",
                    extra={"plugin": block.plugin, "where": block.where})
        if block.plugin is not None and not block.bundled:
            self.blocks[block.plugin] = block


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
