"""The daemon's side of the model host: spawn it, talk to it, restart it when it dies.

Every request gets an id; replies are routed back to the waiting coroutine by that id. When the
host exits unexpectedly, every waiting request gets a ``HostCrashed`` error at once (never a
hang), and the next request starts a fresh host after a short backoff.

A host that stops answering (SIGSTOP, a deadlock, a call that holds the interpreter) would
leave its requests waiting forever: with a ``deadline``, a watchdog sends it a ``beat`` every
few seconds, which it answers at once even while it generates, and kills a host that leaves one
unanswered for ``deadline`` seconds. Its requests then fail with ``HostHung`` (a 503 to retry),
and the next request starts a fresh host.

The error of a host that ended carries its ``pid`` and ``returncode`` (a negative code: the
signal that ended it), so the daemon can tell which variant of llama.cpp died, and how.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from assistant.errors import ChatTemplateError, HostError

# HostError lives in assistant.errors; it is importable from here too, where it is raised.
__all__ = ["HostError", "HostProcess", "host_error"]

log = logging.getLogger("assistant.host")

_EOF = {"error": {"type": "HostCrashed", "message": "the model host stopped unexpectedly"}}


def host_error(error: dict[str, Any]) -> Exception:
    """The exception for an ``error`` reply: a template the sandbox refused is the model
    file's fault, never the host's (:class:`ChatTemplateError`); anything else a HostError."""
    kind, message = str(error.get("type")), str(error.get("message"))
    if kind == "TemplateError":
        return ChatTemplateError(message, "Use another model, or fix its chat template.")
    return HostError(kind, message, error.get("pid"), error.get("returncode"))


class HostProcess:
    def __init__(self, deadline: float = 0.0, command: list[str] | None = None) -> None:
        self.deadline = deadline  # seconds a beat may go unanswered; 0: no watchdog
        # The host's command line: this interpreter running assistant.models.host (a test's
        # stand-in speaks the same protocol).
        self.command = command or [sys.executable, "-m", "assistant.models.host"]
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._hung: int | None = None  # the pid the watchdog killed
        self._pending: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._start_lock = asyncio.Lock()
        self._crashes = 0
        self._last_start = 0.0
        self.generation = 0  # bumped at every (re)start: loaded models are gone after a crash

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    async def _ensure_started(self) -> None:
        async with self._start_lock:
            if self._proc is not None and self._proc.returncode is None:
                return
            if self._crashes:
                # Back off after crashes so a model that kills the host cannot spin the CPU.
                delay = min(0.25 * 2 ** (self._crashes - 1), 8.0)
                await asyncio.sleep(max(0.0, delay - (time.monotonic() - self._last_start)))
            env = dict(os.environ)
            env.setdefault("OMP_NUM_THREADS", "1")
            self._proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env=env, limit=64 * 1024 * 1024,
            )
            self._last_start = time.monotonic()
            self.generation += 1
            self._reader = asyncio.create_task(self._read(self._proc))
            if self.deadline > 0:
                self._watchdog = asyncio.create_task(self._watch(self._proc))
            log.info("model host started", extra={"pid": self._proc.pid})

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(message, dict):
                    continue
                queue = self._pending.get(str(message.get("id")))
                if queue is not None:
                    queue.put_nowait(message)
        except Exception:
            # A reply we cannot read (over the line limit, say): waiting on would hang every
            # request, so end the host; everyone waiting gets an error, the next one a new host.
            log.exception("unreadable reply from the model host")
            proc.kill()
        finally:
            code = await proc.wait()
            self.generation += 1  # whatever it held is gone
            if code != 0:
                self._crashes += 1
                log.warning("model host exited", extra={"code": code})
            ended = {"error": {**_EOF["error"], "pid": proc.pid, "returncode": code}}
            if self._hung == proc.pid:
                ended = {"error": {"type": "HostHung", "pid": proc.pid, "returncode": code,
                                   "message": (
                    f"the model host did not answer for {self.deadline:g} s "
                    "(models.host_deadline) and was killed; it restarts on the next request")}}
            for queue in self._pending.values():
                queue.put_nowait(ended)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """Beat ``proc`` every few seconds; kill it when a beat goes unanswered too long."""
        every = min(2.0, self.deadline / 3)
        while proc.returncode is None:
            await asyncio.sleep(every)
            if proc.returncode is not None or await self._beat(proc):
                continue
            self._hung = proc.pid
            log.error("model host hung: killed", extra={
                "pid": proc.pid, "deadline_s": self.deadline, "waiting": len(self._pending)})
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # SIGKILL reaches a stopped process too
            return

    async def _beat(self, proc: asyncio.subprocess.Process) -> bool:
        """Whether ``proc`` answered a beat (or ended) within the deadline. A little grace
        after it: when this loop itself stalled, its reader gets to read the answer first."""
        rid = f"b{next(self._ids)}"
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending[rid] = queue
        answer: asyncio.Future[dict[str, Any]] | None = None
        try:
            if proc.stdin is None:
                return True
            proc.stdin.write(json.dumps({"id": rid, "op": "beat"}).encode() + b"\n")
            answer = asyncio.ensure_future(self._drained_get(proc, queue))
            for wait in (self.deadline, min(1.0, self.deadline / 4)):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(answer), wait)
                    return True
            return False
        except (ConnectionError, RuntimeError):  # its pipe is gone: it ended, the reader says
            return True
        finally:
            if answer is not None:
                answer.cancel()
            self._pending.pop(rid, None)

    @staticmethod
    async def _drained_get(proc: asyncio.subprocess.Process,
                           queue: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
        if proc.stdin is not None:
            await proc.stdin.drain()
        return await queue.get()

    async def _send(self, message: dict[str, Any]) -> None:
        await self._ensure_started()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message).encode() + b"\n")
            await self._proc.stdin.drain()
        except ConnectionError:
            # Killed before its reader saw it end (or just after it started): the request
            # failed as one in flight would, not with a pipe error (a 500 before).
            raise host_error(_EOF["error"]) from None

    async def call(self, op: str, *, cancellable: bool = False, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its one reply. ``cancellable``: when the caller stops
        waiting (its task is cancelled), the host is told to ``cancel`` the request."""
        rid = str(next(self._ids))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending[rid] = queue
        answered = False
        try:
            await self._send({"id": rid, "op": op, **fields})
            reply = await queue.get()
            answered = True
        finally:
            self._pending.pop(rid, None)
            if cancellable and not answered:
                with contextlib.suppress(Exception):
                    await self._send_raw({"id": f"c{rid}", "op": "cancel", "target": rid})
        if "error" in reply:
            raise host_error(reply["error"])
        result: dict[str, Any] = reply.get("ok", {})
        self._crashes = 0
        return result

    async def stream(self, op: str, **fields: Any) -> AsyncIterator[dict[str, Any]]:
        """Send one request and yield its replies until ``done``. Closing early cancels it."""
        rid = str(next(self._ids))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending[rid] = queue
        finished = False
        try:
            await self._send({"id": rid, "op": op, **fields})
            while True:
                reply = await queue.get()
                if "error" in reply:
                    finished = True
                    raise host_error(reply["error"])
                if "done" in reply:
                    finished = True
                    self._crashes = 0
                    yield reply
                    return
                yield reply
        finally:
            self._pending.pop(rid, None)
            if not finished:
                with contextlib.suppress(Exception):
                    await self._send_raw({"id": f"c{rid}", "op": "cancel", "target": rid})

    async def _send_raw(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            return
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        await proc.stdin.drain()

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def stop(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self._send_raw({"id": "0", "op": "shutdown"})
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader
        if self._watchdog is not None:
            self._watchdog.cancel()
