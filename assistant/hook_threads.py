"""Where a plugin's sync hook runs: a thread off the event loop, reused, never waited for.

A hook that blocks (``time.sleep``, a stuck lock) must stall neither the event loop nor a pool
others wait for, nor the daemon's exit; past its timeout it is left behind. Starting a thread per
call gave that, but output filters run once per streamed piece, and ``Thread.start`` waits
until the new thread runs: on two busy cores that wait held the event loop for milliseconds a
token. So a thread that finished its call waits, idle, for the next one (:data:`IDLE_S` at most,
then ends); a call finds an idle thread or starts one. A thread left behind by a timeout is not
idle, so no call ever queues behind a stuck one; there is no cap, as there was none before.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

IDLE_S = 60.0

Job = Callable[[], Callable[[], None]]  # runs the call, returns how to deliver its outcome


class _Worker:
    def __init__(self, pool: HookThreads) -> None:
        self.pool = pool
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="hook", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=self.pool.idle_s)
            except queue.Empty:
                if self.pool.retire(self):
                    return
                continue  # a call took this thread just now: its job is on the way
            deliver = job()
            # Idle before the caller hears back: its next call finds this thread.
            self.pool.rest(self)
            deliver()
            del job, deliver  # an idle thread holds nothing of the last call
            threading.current_thread().name = "hook"


class HookThreads:
    """Threads that run sync hooks: :meth:`call` runs one and gives its future."""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    @property
    def idle(self) -> int:
        return len(self._idle)

    def call(self, function: Callable[..., Any], kwargs: dict[str, Any], name: str = "",
             ) -> asyncio.Future[Any]:
        """A future (of the running loop) of ``function(**kwargs)``, run on a hook thread
        (named ``hook NAME`` while it runs, for stack dumps)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, exc: BaseException | None) -> None:
            if future.done():  # left behind by the timeout
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        def job() -> Callable[[], None]:
            threading.current_thread().name = f"hook {name}"
            try:
                result = function(**kwargs)
            except BaseException as exc:  # handed to the awaiting side, which decides
                outcome: tuple[Any, BaseException | None] = (None, exc)
            else:
                outcome = (result, None)

            def deliver() -> None:
                # RuntimeError: the loop closed while the hook ran late; nobody waits now.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle, *outcome)

            return deliver

        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self)
        worker.jobs.put(job)
        return future

    def rest(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def retire(self, worker: _Worker) -> bool:
        """True when ``worker``, idle past ``idle_s``, may end: no call has taken it."""
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False
