"""The compute thread: the one thread of the model host that runs llama.cpp's decodes.

llama.cpp's CPU code computes a graph on an OpenMP team of the calling thread; libgomp gives each
calling thread a team of its own, and once a process has more OpenMP threads than CPUs it stops
spinning between graph nodes and sleeps instead (its throttled spin count). With a scheduler
thread per loaded model, two models loaded made decoding run at 0.66-0.69x the raw library
(qwen 0.5B, 2 cores). So one thread steps every engine (:class:`~assistant.models.batch.Engine`)
in turn and alone touches their contexts; request threads hand it commands (:meth:`call`), run
between steps. A generated token wakes no thread but its reader: no lock is taken back and forth,
no decode is handed to another thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Steps(Protocol):
    def working(self) -> bool:
        """Whether a decode is due."""

    def pause(self) -> float | None:
        """Seconds until :meth:`idle` is due (0: now, again each turn while it has work);
        None: never."""

    def step(self) -> None:
        """Run one decode; never raises."""

    def idle(self) -> None:
        """No engine decodes: its idle work, if its own :meth:`pause` is over."""


class ComputeThread:
    def __init__(self) -> None:
        self.engines: list[Steps] = []
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._run, name="llama-compute", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` run on the compute thread between two steps: its result, or its
        exception raised here."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        future: Future[T] = Future()
        self._commands.put((lambda: fn(*args), future))
        return future.result()

    def _run(self) -> None:
        while True:
            working = any(e.working() for e in self.engines)
            pauses = [p for e in self.engines if (p := e.pause()) is not None]
            try:
                command, future = self._commands.get(
                    block=not working, timeout=min(pauses) if pauses else None)
            except queue.Empty:  # a step to run, or idle for the shortest pause
                for engine in list(self.engines):
                    if working and engine.working():
                        engine.step()
                    elif not working and engine.pause() is not None:
                        engine.idle()
                continue
            try:
                future.set_result(command())
            except BaseException as exc:  # the caller's to handle
                future.set_exception(exc)


_lock = threading.Lock()
_thread: ComputeThread | None = None


def compute_thread() -> ComputeThread:
    """The process's compute thread, started on first use."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = ComputeThread()
        return _thread
