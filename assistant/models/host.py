"""The model host: a child process, the only code that imports llama_cpp and onnxruntime.

It reads JSON requests, one per line, on stdin and writes JSON replies on the stdout it was
given (C libraries that print are pointed at stderr first, so nothing corrupts the protocol).
A hostile or broken model file can only kill this process; the daemon restarts it.

Requests carry ``id`` and ``op``. Replies carry the same ``id`` and either ``ok`` with a result,
a stream of ``delta`` pieces ending in ``done``, or ``error`` ({type, message}). Loading and
unloading chat models runs on one worker thread, embedding on another, so routing never waits
for a long reply; each ``chat`` runs on a thread of its own, and up to a model's ``parallel``
of them decode together in one batch (:mod:`assistant.models.batch`), the rest waiting for a
free sequence.
``embed`` (``texts``, ``batch``) runs ``batch`` texts at a time, in turn with the other embed
jobs, so routing a turn waits for one batch of a long job at most, never for all of it; a
``cancel`` naming it ends it before its next batch with the error ``Cancelled``.
``complete`` is ``chat`` for a raw ``prompt`` (no chat template), with the same replies.
``cancel`` (``target``: a request id) ends that chat early, while it reads its prompt too: its
``done`` has finish_reason ``cancelled``; cancelled during the prompt read, it has the prompt's
full ``prompt_tokens``, no completion tokens, and in ``timings`` the prompt tokens it evaluated
before it stopped (``evaluated_tokens``; ``cached_tokens`` were reused, not read).
``cpu`` (``cpu_variant``, ``avoid``) loads llama.cpp's CPU variant, as the first chat ``load``
would, and answers which with the host's ``pid``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

from assistant.errors import UnsafePath
from assistant.locations import inside
from assistant.models import cpu
from assistant.models.kv_cache import StateCache, claim
from assistant.models.llama import LlamaRunner, RequestRefused
from assistant.models.onnx import BATCH, OnnxEmbedder
from assistant.models.template import TemplateError
from assistant.priority import background
from assistant.redaction import redact


class _Output:
    """Thread-safe writer of protocol lines. When the daemon's end is gone (it died), ``gone``
    is set and lines are dropped: every reply under way ends as cancelled, and the host exits
    once its stdin closes, saving its conversations' states as at a shutdown, rather than
    printing a pipe error per streaming thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.gone = False

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False).encode() + b"\n"
        with self._lock:
            if self.gone:
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.gone = True
                self._to_nowhere()

    def _to_nowhere(self) -> None:
        """Point the stream's file at /dev/null: what its buffer still holds is flushed there
        at exit, not reported as one more pipe error."""
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno(), inheritable=False)
            finally:
                os.close(null)


class _EmbedJob:
    """An ``embed`` request under way: its batches still to run, and the vectors so far. A
    cancel sets ``options.terminate``, which stops the batch onnxruntime is computing."""

    def __init__(self, request: dict[str, Any], embedder: OnnxEmbedder) -> None:
        import onnxruntime

        self.rid = str(request.get("id"))
        self.options = onnxruntime.RunOptions()
        self.batches = embedder.chunks(request["texts"], int(request.get("batch") or BATCH),
                                       self.options)
        self.vectors: list[list[float]] = []


def _load_cpu(request: dict[str, Any]) -> dict[str, Any]:
    """:func:`cpu.load` as a ``cpu`` or ``load`` request asks: ``avoid`` names the variants
    that killed an earlier host with SIGILL."""
    return cpu.load(str(request.get("cpu_variant", "auto")), request.get("avoid") or ())


class Host:
    def __init__(self, out: _Output) -> None:
        self.out = out
        self.chat_models: dict[str, LlamaRunner] = {}
        self.embedders: dict[str, OnnxEmbedder] = {}
        self.cancelled: set[str] = set()
        # Requests under way: a cancel is kept only for one of them (the daemon also cancels
        # requests that have already answered, and those would pile up here). The lock makes
        # "still under way? then mark it" one step against a job ending on another thread.
        self.in_flight: set[str] = set()
        self._jobs_lock = threading.Lock()
        # Set at shutdown: a reply stops at its next token, a prompt read within the graph
        # node it is computing, as a cancel stops them.
        self.stopping = False
        self.chat_jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.embed_jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.chats: set[threading.Thread] = set()  # requests running, each on its thread
        self.embedding: dict[str, _EmbedJob] = {}  # embed jobs under way, by request id

    # -- dispatch -----------------------------------------------------------------------------

    def submit(self, request: dict[str, Any]) -> None:
        op = request.get("op")
        if op == "cancel":
            target = str(request.get("target"))
            with self._jobs_lock:
                if target in self.in_flight:
                    self.cancelled.add(target)
                    if (job := self.embedding.get(target)) is not None:
                        job.options.terminate = True  # its batch stops where it is
            return
        if op == "beat":  # the daemon's watchdog: any answer says the host is not hung
            self.out.send({"id": request["id"], "ok": {}})
            return
        if op in {"ping", "info"}:  # answered at once, even while a reply is generating
            self.out.send({"id": request["id"], "ok": {
                "pid": os.getpid(), "llama_cpp": LlamaRunner.library_version(),
                "cpu_variant": cpu.in_use(),
                "chat_models": sorted(self.chat_models), "embedders": sorted(self.embedders),
                "state_cache": {n: r.states.stats() for n, r in list(self.chat_models.items())},
            }})
            return
        with self._jobs_lock:
            self.in_flight.add(str(request.get("id")))
        if op in {"embed", "load_embedding", "unload_embedding"}:
            self.embed_jobs.put(request)
        elif op in {"chat", "complete"}:
            thread = threading.Thread(target=self.run, args=(request,), daemon=True)
            self.chats.add(thread)
            thread.start()
        else:
            self.chat_jobs.put(request)

    def worker(self, jobs: queue.Queue[dict[str, Any] | None]) -> None:
        while (request := jobs.get()) is not None:
            self.run(request)

    def embed_worker(self) -> None:
        """Loads and unloads embedding models and runs embed jobs, a batch of each in turn."""
        background()  # this thread and the onnxruntime threads it starts
        jobs: list[_EmbedJob] = []
        while True:
            while True:  # take every request waiting; wait for one when no job runs
                try:
                    request = self.embed_jobs.get(block=not jobs)
                except queue.Empty:
                    break
                if request is None:
                    return
                if request.get("op") != "embed":
                    self.run(request)
                    continue
                try:
                    job = _EmbedJob(request, self.embedders[request["model"]])
                    with self._jobs_lock:
                        self.embedding[job.rid] = job
                        if job.rid in self.cancelled:  # cancelled while it waited
                            job.options.terminate = True
                    jobs.append(job)
                except Exception as exc:
                    self._embed_failed(str(request.get("id")), exc)
                    self._ended(str(request.get("id")))
            for job in list(jobs):
                if not self._embed_step(job):
                    jobs.remove(job)

    def _embed_step(self, job: _EmbedJob) -> bool:
        """Run ``job``'s next batch; False once it has answered (done, failed or cancelled)."""
        try:
            if self.stopping or self.out.gone or job.rid in self.cancelled:
                raise Cancelled(f"embedding request {job.rid} was cancelled")
            job.vectors = next(job.batches)
            return True
        except StopIteration:
            self.out.send({"id": job.rid, "ok": {"vectors": job.vectors}})
        except Exception as exc:
            # onnxruntime's "terminate flag" error, after a cancel: reported as the cancel
            self._embed_failed(job.rid, Cancelled(f"embedding request {job.rid} was cancelled")
                               if job.options.terminate else exc)
        self._ended(job.rid)
        return False

    def _ended(self, rid: str) -> None:
        """``rid`` has answered: a cancel for it from now on is ignored."""
        with self._jobs_lock:
            self.in_flight.discard(rid)
            self.cancelled.discard(rid)
            self.embedding.pop(rid, None)

    def _embed_failed(self, rid: str, exc: Exception) -> None:
        self.out.send({"id": rid, "error": {
            "type": type(exc).__name__, "message": redact(str(exc)) or type(exc).__name__}})
        if not isinstance(exc, Cancelled):
            traceback.print_exc(file=sys.stderr)

    def run(self, request: dict[str, Any]) -> None:
        rid = request.get("id")
        try:
            result = self.handle(request)
            if result is not None:
                self.out.send({"id": rid, "ok": result})
        except Exception as exc:  # reported to the daemon, which decides what the user sees
            message = redact(str(exc)) or type(exc).__name__
            if isinstance(exc, TemplateError) and request.get("model"):
                message = f"model {request['model']!r}: {message}"
            self.out.send({"id": rid, "error": {
                "type": type(exc).__name__, "message": message,
            }})
            if not isinstance(exc, RequestRefused):  # the caller's: no trace to keep
                traceback.print_exc(file=sys.stderr)
        finally:
            self._ended(str(rid))
            self.chats.discard(threading.current_thread())

    def handle(self, request: dict[str, Any]) -> dict[str, Any] | None:
        op = request["op"]
        if op == "cpu":
            # Before the first chat model, so the daemon knows which variant a SIGILL while
            # loading one (ggml repacks weights then) or running one came from.
            return {"pid": os.getpid(), "cpu_variant": _load_cpu(request)}
        if op == "load":
            name = request["model"]
            if name not in self.chat_models:
                _load_cpu(request)  # once, before the first ("cpu" has done it, as a rule)
                state_dir = _state_dir(request.get("state_dir"))
                ram = int(request.get("state_ram_bytes", 1 << 30))
                disk = int(request.get("state_disk_bytes", 4 << 30))
                loaded = LlamaRunner(
                    request["path"], n_ctx=request["n_ctx"], n_threads=request["n_threads"],
                    parallel=int(request.get("parallel", 1)),
                    state_dir=state_dir, state_ram_bytes=ram, state_disk_bytes=disk,
                )
                scope = loaded.states.directory  # <state_dir>/<model scope>: no link out either
                if state_dir is not None and scope is not None and _leads_out(state_dir, scope):
                    loaded.states = StateCache(None, ram, disk)
                elif scope is not None:  # the model's directories no load can use again go
                    claim(scope, os.path.realpath(request["path"]))  # never raises
                self.chat_models[name] = loaded
            return {**self.chat_models[name].info(), "cpu_variant": cpu.in_use()}
        if op == "unload":
            runner = self.chat_models.pop(request["model"], None)
            if runner is not None:
                runner.close()
            return {}
        if op == "load_embedding":
            name = request["model"]
            if name not in self.embedders:
                self.embedders[name] = OnnxEmbedder(
                    request["path"], request["tokenizer"], n_threads=request["n_threads"],
                )
            return self.embedders[name].info()
        if op == "unload_embedding":
            self.embedders.pop(request["model"], None)
            return {}
        if op == "forget":  # a deleted conversation's saved states
            tag = str(request["tag"])
            return {"removed": sum(r.forget(tag) for r in self.chat_models.values())}
        if op == "count":
            return {"tokens": self._chat_model(request).count(request["messages"])}
        if op in {"chat", "complete"}:
            self._chat(request)
            return None
        raise ValueError(f"unknown operation {op!r}")

    def _chat_model(self, request: dict[str, Any]) -> LlamaRunner:
        try:
            return self.chat_models[request["model"]]
        except KeyError:
            raise ValueError(f"model {request['model']!r} is not loaded") from None

    def _chat(self, request: dict[str, Any]) -> None:
        rid = str(request["id"])
        runner = self._chat_model(request)
        started = time.perf_counter()
        params = request.get("params", {})

        def cancelled() -> bool:
            return self.stopping or self.out.gone or rid in self.cancelled

        if request["op"] == "complete":
            stream = runner.complete(request["prompt"], params, cancelled=cancelled)
        else:
            stream = runner.chat(request["messages"], params, cancelled=cancelled)
        for piece in stream:
            at = {"id": rid, "index": piece.index} if piece.index else {"id": rid}
            if piece.text or (piece.logprobs and piece.finish_reason is None):
                self.out.send({**at, "delta": piece.text,
                               **({"logprobs": piece.logprobs} if piece.logprobs else {})})
            for call in piece.tool_calls:
                self.out.send({**at, "tool_call": call})
            if piece.finish_reason is not None:
                # The last reply's end is "done", sent at once (before the state is saved).
                self.out.send({**at, "done" if piece.last else "finished": {
                    "finish_reason": piece.finish_reason,
                    "prompt_tokens": piece.prompt_tokens,
                    "completion_tokens": piece.completion_tokens,
                    "timings": {**piece.timings, "total_s": time.perf_counter() - started},
                    **({"logprobs": piece.logprobs} if piece.logprobs else {}),
                }})


class Cancelled(Exception):
    """A job the daemon cancelled (its client went away)."""


def _state_dir(path: str | None) -> str | None:
    """``path`` for saved states, or None (states kept in memory only) when it is a symlink
    leading out of the dir it sits in: the host must not write model states elsewhere."""
    if path is None or _leads_out(str(Path(path).parent), Path(path)):
        return None
    return path


def _leads_out(root: str, path: Path) -> bool:
    try:
        inside(Path(root), path)
    except UnsafePath as exc:
        print(f"model states are kept in memory only: {exc}", file=sys.stderr, flush=True)
        return True
    return False


def main() -> None:
    # Our protocol owns the real stdout; anything C code prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    host = Host(_Output(proto))
    workers = [
        threading.Thread(target=host.worker, args=(host.chat_jobs,), daemon=True),
        threading.Thread(target=host.embed_worker, daemon=True),
    ]
    for thread in workers:
        thread.start()
    for raw in sys.stdin.buffer:
        try:
            request = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if not isinstance(request, dict):
            continue
        if request.get("op") == "shutdown":
            break
        try:
            host.submit(request)
        except Exception as exc:  # a bad request must not end the host
            host.out.send({"id": request.get("id"), "error": {
                "type": type(exc).__name__, "message": str(exc) or type(exc).__name__}})
        if host.out.gone:  # no one reads the replies: the daemon is gone
            break
    # Shut down, asked to or not: stdin ended, or stdout broke (the daemon died).
    host.stopping = True
    for job in list(host.embedding.values()):
        job.options.terminate = True
    host.chat_jobs.put(None)
    host.embed_jobs.put(None)
    deadline = time.monotonic() + 5
    for thread in [*workers, *list(host.chats)]:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    for runner in list(host.chat_models.values()):
        try:
            runner.close()  # saves the state of every conversation it holds, for the next start
        except Exception as exc:
            print(f"closing model {runner.path}: {exc}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
