"""Continuous batching: up to ``parallel`` sequences of one chat model decode in one context.

The process's compute thread (:mod:`assistant.models.compute`) alone touches the llama.cpp
context. Each request runs on its own thread: it takes a :class:`Slot` (a sequence id of the
context, with the tokens its KV cache holds), starts a :class:`Job` on it, and reads the job's
tokens as they come; taking, starting, stopping and letting go are commands the compute thread
runs between two steps. Every step of the engine is one
``llama_decode`` of a batch holding the next token of every sequence that is generating and, in
the room left, a chunk of the prompt of every sequence that is reading one; a new request joins
the running batch at the next step. While others generate, a prompt is read in chunks of
:data:`BUSY_CHUNK` tokens so that their streams go on; alone, in ``n_batch`` batches, as before.

Each job samples with its own chain (temperature, top_p, seed, penalties, grammar, logit bias:
llama.cpp's samplers, made per request), stops at its own limit and end of generation, and is
cancelled on its own. The engine feeds each sampled token back at once, so a stream never
waits for its request thread; a job its reader stopped (a stop string, a call found) leaves the
batch at the next step. The KV cache of a slot always holds exactly ``slot.tokens``: the next
request on it reuses their longest common prefix with its prompt, and a saved state of a
conversation (:class:`~assistant.models.kv_cache.StateCache`) is restored into a free slot when it
shares more. The context and the state cache are only touched on the compute thread.
"""

from __future__ import annotations

import ctypes
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np

from assistant.models.abort import Abort
from assistant.models.compute import compute_thread
from assistant.models.kv_cache import StateCache, common_prefix

# Restoring a saved state pays off once it spares this many tokens over a live sequence.
MIN_REUSE_GAIN = 32
# Shorter sequences are cheaper to recompute than to save.
MIN_SAVED_TOKENS = 64
# Prompt tokens read per step while other sequences generate: each step costs them a token's
# wait, so a long prompt is read in pieces that keep their streams going.
BUSY_CHUNK = 128
# A sequence's state is saved when the engine has been idle this long (seconds), when its
# slot goes to another conversation, and at the end: never between a reply and its follow-up.
# Once idle that long, the engine saves one sequence a turn of the compute thread (a few ms
# each), so a waiting request is served between two saves.
IDLE_SAVE = 1.0

# What a job reports to its reader: ("read", kept, evaluated, complete), ("token", id, logprob
# item or None), ("end", reason) with reason eog, limit, full or cancelled, ("error", exception).
Event = tuple[Any, ...]


@dataclass(eq=False)
class Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds, from position 0
    tag: str = ""  # the conversation it belongs to (params["cache_tag"])
    dirty: bool = False  # holds tokens no saved state holds
    busy: bool = False
    used: float = 0.0
    forgotten: bool = False  # its conversation was deleted while it ran: never save it


class Job:
    """One generation on a slot: read what the slot lacks of the prompt, then sample."""

    def __init__(self, slot: Slot, sampler: Any, limit: int, cancelled: Callable[[], bool],
                 logprob: Callable[[int, int], dict[str, Any]] | None) -> None:
        self.slot = slot
        self.sampler = sampler
        self.limit = limit
        self.cancelled = cancelled
        self.logprob = logprob
        self.pending: list[int] = []  # tokens to decode next
        self.reading = True
        self.kept = 0
        self.evaluated = 0
        self.sampled = 0
        self.stopped = False  # its reader is done with it
        self.done = False
        self.out: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def end(self, reason: str) -> None:
        if self.reading:
            self.out.put(("read", self.kept, self.evaluated, False))
        self.out.put(("end", reason))
        self.done = True

    def fail(self, exc: BaseException) -> None:
        self.out.put(("error", exc))
        self.done = True


class Engine:
    def __init__(self, llm: Any, parallel: int, n_ctx: int, states: StateCache) -> None:
        self.llm = llm  # a Llama whose context has n_seq_max = parallel
        self.ctx = llm._ctx.ctx
        self.n_ctx = n_ctx  # per sequence
        self.n_batch = int(llm.n_batch)
        self.states = states
        self.slots = [Slot(seq) for seq in range(parallel)]
        self.jobs: list[Job] = []
        self._freed = threading.Event()  # a slot was let go
        self._spare = (ctypes.c_uint8 * 0)()  # reused: a fresh buffer of tens of MB is slow
        self._stirred = 0.0  # when a request last took, started on or let go of a slot
        self.stopping = False  # the host is shutting down: every job ends as cancelled
        self._abort = Abort(self.ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._partial = not (llm._is_recurrent or llm._is_hybrid)  # can drop part of a seq
        self._compute = compute_thread()
        self._compute.call(self._compute.engines.append, self)

    # -- slots -------------------------------------------------------------------------------

    def acquire(self, prompt: list[int], tag: str, cancelled: Callable[[], bool]) -> Slot | None:
        """A free slot, made the best start for ``prompt``; None if cancelled while waiting."""
        while True:
            self._freed.clear()
            slot = self._compute.call(self._take, prompt, tag)
            if slot is not None or cancelled() or self.stopping:
                return slot
            self._freed.wait(0.1)

    def _take(self, prompt: list[int], tag: str) -> Slot | None:
        free = [s for s in self.slots if not s.busy]
        if not free or self.stopping:
            return None
        slot = self._choose(free, prompt, tag)
        slot.busy, slot.forgotten, slot.tag = True, False, tag
        self._stirred = time.monotonic()
        for other in free:
            if other is not slot and self._held(other):
                self._clear(other)
        return slot

    def _held(self, slot: Slot) -> bool:
        """Whether a saved state in RAM holds all ``slot`` holds, so that its sequence can
        be emptied: every cell in the buffer costs each decode step some time, another
        sequence's too (one stream of qwen2.5-coder-0.5b next to three saved stories: 23.6-24.0
        tok/s against 25.0-25.5 without them), and the conversation restores the state from
        RAM in a few ms (from disk, a file of up to hundreds of MB is read: not worth it)."""
        return (bool(slot.tokens) and not slot.dirty
                and self.states.in_ram(np.array(slot.tokens, dtype=np.int32)))

    def release(self, slot: Slot) -> None:
        """The request is done with ``slot``. Its sequence stays as it is for the
        conversation's next turn; its state is saved later (see :data:`IDLE_SAVE`), and once
        saved the sequence may be emptied for another's sake (:meth:`_held`)."""
        self._compute.call(self._release, slot)

    def _release(self, slot: Slot) -> None:
        self.jobs = [j for j in self.jobs if j.slot is not slot]
        if slot.forgotten:
            self._clear(slot)
            slot.tag = ""
        slot.busy, slot.used = False, time.monotonic()
        self._stirred = slot.used
        self._freed.set()

    def _choose(self, free: list[Slot], prompt: list[int], tag: str) -> Slot:
        wanted = np.array(prompt, dtype=np.int32)
        shared = {s.seq: common_prefix(np.array(s.tokens, dtype=np.int32), wanted) for s in free}
        live = max(free, key=lambda s: (shared[s.seq], -s.used))
        n = shared[live.seq]
        # Past that, a saved state may beat the live sequence (not when this is the follow-up
        # of the reply just sent: then nothing is looked up).
        if n + MIN_REUSE_GAIN <= len(prompt):
            entry, length = self.states.best(wanted)
            if entry is not None and length >= n + MIN_REUSE_GAIN:
                target = self._vacant(free)
                data = self.states.load(entry)
                if data is not None and self._restore(target, entry.tokens, data):
                    self.states.touch(entry)
                    self.states.hits += 1
                    return target
            if n < MIN_REUSE_GAIN and len(prompt) >= MIN_SAVED_TOKENS:
                self.states.misses += 1
        if not n:  # nothing to reuse
            target = self._vacant(free)
            self.save(target)  # the conversation it held
            return target
        return self._share(live, n, tag)

    def _share(self, live: Slot, n: int, tag: str) -> Slot:
        """``live``, to hold its first ``n`` tokens for a prompt that parts from it there, such
        that what it holds past them is not lost unsaved: when that belongs to another
        conversation or is long, it is saved first.

        Not copied into another sequence (``llama_memory_seq_cp``) instead: a sequence whose
        cells another holds too decoded 2-3x slower (qwen2.5-coder-0.5b, three ~3,000-token
        conversations in the buffer: 13-20 tok/s against 36-49 reused in place)."""
        if live.dirty and (live.tag != tag or len(live.tokens) - n >= MIN_REUSE_GAIN):
            self.save(live)
        return live

    @staticmethod
    def _vacant(free: list[Slot]) -> Slot:
        """The free slot to take for a new conversation: an empty one, else the least
        recently used."""
        return min(free, key=lambda s: (len(s.tokens) > 0, s.used))

    def _restore(self, slot: Slot, tokens: np.ndarray, data: memoryview) -> bool:
        self.save(slot)  # the conversation it held
        self._clear(slot)
        source = np.frombuffer(data, dtype=np.uint8)  # read in place, not copied
        pointer = source.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        if not llama_cpp.llama_state_seq_set_data(self.ctx, pointer, len(source), slot.seq):
            self._clear(slot)  # unusable: recompute
            return False
        slot.tokens = [int(t) for t in tokens]
        return True

    def _clear(self, slot: Slot) -> None:
        """Empty ``slot``'s sequence; it keeps its conversation's tag."""
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self.ctx), slot.seq, -1, -1)
        slot.tokens, slot.dirty = [], False

    def _state(self, slot: Slot) -> tuple[np.ndarray, memoryview, str] | None:
        """``slot``'s KV state to save (tokens, state, tag), copied out into the spare buffer;
        None when there is nothing worth saving."""
        n = len(slot.tokens)
        if not slot.dirty or n < MIN_SAVED_TOKENS or slot.forgotten:
            return None
        memory = llama_cpp.llama_get_memory(self.ctx)
        if memory is not None and llama_cpp.llama_memory_seq_pos_max(memory, slot.seq) != n - 1:
            return None  # the cache does not hold exactly the slot's tokens: never save a lie
        size = llama_cpp.llama_state_seq_get_size(self.ctx, slot.seq)
        if len(self._spare) < size:
            self._spare = (ctypes.c_uint8 * int(size * 1.25))()
        written = llama_cpp.llama_state_seq_get_data(self.ctx, self._spare, size, slot.seq)
        if not written:
            return None
        slot.dirty = False
        return (np.array(slot.tokens, dtype=np.int32), memoryview(self._spare)[:written],
                slot.tag)

    def save(self, slot: Slot) -> None:
        """Keep ``slot``'s KV state (RAM, then disk) so that a return to it is cheap."""
        state = self._state(slot)
        if state is not None:
            self.states.put(*state)

    def idle(self) -> None:
        """Once the engine is quiet (:meth:`pause`), save one sequence no request holds, the
        latest used first; one not worth saving is marked as if saved."""
        unsaved = [s for s in self.slots if s.dirty and not s.busy]
        if unsaved and self.pause() == 0.0:
            slot = max(unsaved, key=lambda s: s.used)
            self.save(slot)
            slot.dirty = False  # too short, or not exact: not tried again

    def pause(self) -> float | None:
        """Seconds until an idle sequence is to be saved (0: now); None when none is."""
        if not any(s.dirty and not s.busy for s in self.slots):
            return None
        return max(0.0, IDLE_SAVE - (time.monotonic() - self._stirred))

    def forget(self, tag: str) -> int:
        """Drop conversation ``tag``'s saved states and the slots that hold it."""
        return self._compute.call(self._forget, tag)

    def _forget(self, tag: str) -> int:
        removed = self.states.forget(tag)
        for slot in self.slots:
            if tag and slot.tag == tag:
                if slot.busy:
                    slot.forgotten = True
                else:
                    self._clear(slot)
                    slot.tag = ""
        return removed

    # -- generation --------------------------------------------------------------------------

    def run(self, slot: Slot, prompt: list[int], sampler: Any, limit: int,
            cancelled: Callable[[], bool],
            logprob: Callable[[int, int], dict[str, Any]] | None = None) -> Iterator[Event]:
        """Read ``prompt`` into ``slot`` (what it holds of it is kept) and sample up to
        ``limit`` tokens with ``sampler``: the job's events, until its end. Closing the
        iterator stops the job."""
        job = Job(slot, sampler, max(1, limit), cancelled, logprob)
        self._compute.call(self._start, job, prompt)
        try:
            while True:
                event = job.out.get()
                yield event
                if event[0] in {"end", "error"}:
                    return
        finally:
            self._compute.call(self._stop, job)  # samples no more once this returns

    def _stop(self, job: Job) -> None:
        job.stopped = True
        if job in self.jobs:
            self.jobs.remove(job)

    def _start(self, job: Job, prompt: list[int]) -> None:
        self.jobs = [j for j in self.jobs if j.slot is not job.slot]
        self._stirred = time.monotonic()
        if self.stopping:
            job.end("cancelled")
            return
        slot = job.slot
        n = len(prompt)
        if not n:
            raise ValueError("an empty prompt: nothing to read")
        live = common_prefix(np.array(slot.tokens, dtype=np.int32), np.array(prompt, np.int32))
        start = min(live, n - 1)  # the last prompt token is read again: sampling needs logits
        if start < len(slot.tokens):
            memory = llama_cpp.llama_get_memory(self.ctx)
            if not (self._partial and llama_cpp.llama_memory_seq_rm(memory, slot.seq, start, -1)):
                self._clear(slot)
                start = 0
            slot.tokens = slot.tokens[:start]
        job.kept, job.pending = start, list(prompt[start:])
        self.jobs.append(job)

    def working(self) -> bool:
        return any(j.pending for j in self.jobs)

    def step(self) -> None:
        try:
            self._step()
        except Exception as exc:  # a bug must end the jobs, not the compute thread
            traceback.print_exc(file=sys.stderr)
            for job in self.jobs:
                job.fail(exc)
            self.jobs = []

    def _step(self) -> None:
        """One decode: every generating job's next token, and prompt chunks in the room left."""
        for job in self.jobs:
            if not job.done and (job.cancelled() or self.stopping):
                job.end("cancelled")
        self.jobs = [j for j in self.jobs if not j.done and not j.stopped]
        generating = [j for j in self.jobs if not j.reading and j.pending]
        reading = [j for j in self.jobs if j.reading and j.pending]
        room = self.n_batch - len(generating)
        chunk = BUSY_CHUNK if generating else self.n_batch
        plan: list[tuple[Job, list[int]]] = [(j, j.pending) for j in generating]
        for job in reading:
            take = min(len(job.pending), room, chunk)
            if take <= 0:
                break
            plan.append((job, job.pending[:take]))
            room -= take
        if not plan:
            return
        rows = self._fill(plan)
        if generating or not self._partial:  # a recurrent model cannot drop half a batch
            code = llama_cpp.llama_decode(self.ctx, self._batch)
        else:  # only prompts: a cancel may stop the read inside this batch
            with self._abort.armed(lambda: self.stopping or all(j.cancelled() for j, _ in plan)):
                code = llama_cpp.llama_decode(self.ctx, self._batch)
        if code != 0:
            self._failed(plan, code)
            return
        due: list[tuple[Job, int]] = []  # jobs whose logits are in, and their rows
        for (job, fed), row in zip(plan, rows, strict=True):
            job.slot.tokens.extend(fed)
            job.slot.dirty = True
            job.pending = job.pending[len(fed):]
            if job.reading:
                job.evaluated += len(fed)
                if job.pending:
                    continue
                job.reading = False
                job.out.put(("read", job.kept, job.evaluated, True))
            due.append((job, row))
        for job, row in due:
            try:
                self._sample(job, row)
            except Exception as exc:  # this request's sampler: it alone fails
                traceback.print_exc(file=sys.stderr)
                job.pending = []
                job.fail(exc)

    def _fill(self, plan: list[tuple[Job, list[int]]]) -> list[int]:
        """Put ``plan`` in the batch; the row of each job's last token, whose logits are kept."""
        batch = self._batch
        rows: list[int] = []
        i = 0
        for job, fed in plan:
            base = len(job.slot.tokens)
            for k, token in enumerate(fed):
                batch.token[i] = token
                batch.pos[i] = base + k
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = job.slot.seq
                batch.logits[i] = k == len(fed) - 1 and (not job.reading or len(fed) ==
                                                         len(job.pending))
                i += 1
            rows.append(i - 1)
        batch.n_tokens = i
        return rows

    def _failed(self, plan: list[tuple[Job, list[int]]], code: int) -> None:
        """A decode that did not happen: the batch leaves no trace in the cache."""
        memory = llama_cpp.llama_get_memory(self.ctx)
        for job, _fed in plan:
            slot = job.slot
            if not (self._partial and
                    llama_cpp.llama_memory_seq_rm(memory, slot.seq, len(slot.tokens), -1)):
                self._clear(slot)
            if code == 2 and self._abort.fired:
                job.end("cancelled")
            else:
                job.fail(RuntimeError(f"llama_decode returned {code}"))

    def _sample(self, job: Job, row: int) -> None:
        token = int(job.sampler.sample(self.llm._ctx, row))
        item = job.logprob(token, row) if job.logprob is not None else None
        job.sampled += 1
        job.out.put(("token", token, item))
        if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
            job.end("eog")
        elif job.sampled >= job.limit:
            job.end("limit")
        elif len(job.slot.tokens) >= self.n_ctx:
            job.end("full")
        else:
            job.pending = [token]

    # -- the end -----------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> bool:
        """End every job (as cancelled), wait for the requests to let their slots go, keep
        every sequence's state, and stop. False if a request still held a slot after
        ``timeout``: the context must then be left alone, not freed."""
        deadline = time.monotonic() + timeout
        self._compute.call(self._end_jobs)
        while True:
            self._freed.clear()
            idle = not any(s.busy for s in self.slots)
            if idle or time.monotonic() >= deadline:
                break
            self._freed.wait(0.1)
        self._compute.call(self._leave, idle)
        self._abort.close()
        if idle:
            llama_cpp.llama_batch_free(self._batch)
        return idle

    def _end_jobs(self) -> None:
        self.stopping = True
        for job in self.jobs:
            job.end("cancelled")
        self.jobs = []

    def _leave(self, idle: bool) -> None:
        if idle:
            for slot in self.slots:
                self.save(slot)
        self._compute.engines.remove(self)
