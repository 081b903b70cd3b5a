"""Which models are resident in the model host, and for how long.

Models load on first use (or at start, ``models.preload``), stay for ``keep_alive`` seconds
after their last use (0: unload at once; -1, or named in ``models.pinned``: pinned, until
unloaded), and give way least recently used first when loading another would pass
``memory_budget_mb``, pinned ones never (:mod:`assistant.daemon.residency`). Each model has
its own queue; the embedding jobs clients send
queue in front of :meth:`ModelManager.embed` (:mod:`assistant.daemon.embeddings`). Models
that plugins serve go to their backends (:mod:`assistant.daemon.plugin_backends`), and what a
request asks of a model is checked first (:mod:`assistant.daemon.request_checks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from assistant.config import KEEP_ALIVE_MAX, KEEP_ALIVE_MIN, Settings
from assistant.daemon import openai_tools
from assistant.daemon.engines import Engines
from assistant.daemon.host_requests import HOST_GONE, host_message, host_params, request_error
from assistant.daemon.plugin_backends import PluginBackends
from assistant.daemon.queue import ModelQueue
from assistant.daemon.request_checks import check_params
from assistant.daemon.residency import Resident, next_victim
from assistant.daemon.variant_crashes import VariantCrashes
from assistant.errors import (
    AssistantError,
    ModelError,
    ModelLoadError,
    ModelNotFound,
    RequestError,
)
from assistant.locations import data_dir
from assistant.models import footprint, registry
from assistant.models.backend import (
    Backend,
    ChatMessage,
    Delta,
    GenerationParams,
    ModelInfo,
    ToolCall,
    close_stream,
)
from assistant.models.host_process import HostError, HostProcess

log = logging.getLogger("assistant.models")


def thread_count(settings: Settings) -> int:
    if settings.daemon.threads:
        return settings.daemon.threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


REPULL = "Check the file with `assistant models show`, or pull it again."


class ModelManager(Backend):
    # The model host honours all of these; a plugin backend is asked (_check_params).
    grammars = tools = choices = logprobs = logit_bias = True

    def __init__(self, settings: Settings, host: HostProcess | None = None) -> None:
        self.settings = settings
        self.host = host or HostProcess(settings.models.host_deadline)
        # CPU variants that killed a host with SIGILL: later hosts load the one below.
        self.variant_crashes = VariantCrashes(settings.models.cpu_variant)
        self.threads = thread_count(settings)
        self.resident: dict[str, Resident] = {}
        self.queues: dict[str, ModelQueue] = {}
        self.backends = PluginBackends()  # models plugins serve
        self.engines = Engines(settings.models.queue)  # [engines.NAME], serving NAME/…
        self._locks: dict[str, asyncio.Lock] = {}
        self._loading: set[asyncio.Future[Resident]] = set()  # loads under way, held here

    # -- plugin backends ---------------------------------------------------------------------

    def add_backend(self, backend: Backend, plugin: str | None = None) -> None:
        self.backends.add(backend, plugin)

    def knows(self, name: str) -> bool:
        """Whether ``name`` is a model of a plugin backend or an engine, or installed."""
        if name in self.backends:
            return True
        engine = self.engines.of(name)
        if engine is not None:
            return engine.serves(name) is not False
        try:
            registry.resolve(self.settings, name)
        except ModelNotFound:
            return False
        return True

    def embedder(self, model: str) -> Callable[[list[str]], Awaitable[list[list[float]]]]:
        """``embed`` with ``model`` fixed: what the router and document search are given."""
        return functools.partial(self.embed, model)

    async def check_max_tokens(self, model: str, params: GenerationParams) -> None:
        """A 400 when ``params.max_tokens`` is beyond the context ``model`` runs with."""
        if params.max_tokens is None:
            return
        context = await self.context_length(model)
        if context and params.max_tokens > context:
            raise RequestError(
                f"max_tokens: {params.max_tokens} is beyond the context of {model!r} "
                f"({context} tokens)", param="max_tokens",
            )

    # -- residency ---------------------------------------------------------------------------

    def _known(self, name: str) -> None:
        """ModelNotFound unless ``name`` is a model; checked before any state is kept for a
        name, so that requests naming made-up models leave nothing behind (a lock and a
        queue each, before)."""
        if name not in self.backends and self.engines.serving(name) is None:
            registry.resolve(self.settings, name)

    def queue(self, name: str) -> ModelQueue:
        if name not in self.queues:
            self._known(name)
            m = self.settings.models
            self.queues[name] = ModelQueue(name, m.parallel, m.queue)
        return self.queues[name]

    def _live(self, name: str) -> Resident | None:
        resident = self.resident.get(name)
        if resident is not None and resident.generation != self.host.generation:
            del self.resident[name]  # the host restarted: it no longer holds this model
            return None
        return resident

    async def load(self, name: str, keep_alive: int | None = None) -> Resident:
        if keep_alive is not None and not KEEP_ALIVE_MIN <= keep_alive <= KEEP_ALIVE_MAX:
            raise RequestError(
                f"keep_alive: {keep_alive} is out of range; give seconds from 0 to "
                f"{KEEP_ALIVE_MAX} (a year), or -1 to keep the model loaded until unloaded",
                param="keep_alive")
        engine = self.engines.of(name)
        if engine is not None:
            raise RequestError(f"model {name!r} runs on engine '{engine.name}'; only local "
                               "models are loaded and unloaded here", param="name")
        if name not in self._locks:
            self._known(name)
        # A caller cancelled mid-load (its client left) must not leave the model in the host
        # unrecorded, uncounted by the budget and out of unload's reach: the load runs on
        # without it and is recorded; keep_alive unloads it in time.
        loading = asyncio.ensure_future(self._resident(name))
        self._loading.add(loading)
        loading.add_done_callback(self._loaded)
        resident = await asyncio.shield(loading)
        resident.last_used = time.monotonic()
        if keep_alive is not None:
            resident.keep_alive = keep_alive
        return resident

    async def _resident(self, name: str) -> Resident:
        async with self._locks.setdefault(name, asyncio.Lock()):
            resident = self._live(name)
            if resident is None:
                resident = await self._load(name)
                self.resident[name] = resident
            return resident

    def _loaded(self, loading: asyncio.Future[Resident]) -> None:
        self._loading.discard(loading)
        if not loading.cancelled():
            loading.exception()  # retrieved: a load whose caller left has no one to raise to

    async def _load(self, name: str) -> Resident:
        record = registry.resolve(self.settings, name)
        m = self.settings.models
        size = int(record.facts.get("size_bytes") or record.path.stat().st_size)
        memory = footprint.plan(record.kind, record.facts, size, m,
                                embed_batch=self.settings.embeddings.batch)
        await self._make_room(memory.total_bytes, keep=name)
        started = time.perf_counter()
        if record.kind == "chat":
            await self._load_cpu(name)
            info = await self._host_load(
                name, "load", REPULL, model=name, path=str(record.path),
                n_ctx=memory.context, parallel=m.parallel, n_threads=self.threads,
                cpu_variant=m.cpu_variant, avoid=self.variant_crashes.avoid,
                state_dir=str(data_dir(self.settings) / "states") if m.state_disk_mb else None,
                state_ram_bytes=m.state_ram_mb << 20, state_disk_bytes=m.state_disk_mb << 20,
            )
        else:
            info = await self._host_load(
                name, "load_embedding", REPULL, model=name, path=str(record.path),
                tokenizer=str(record.tokenizer_path), n_threads=self.threads,
            )
        log.info("model loaded", extra={"model": name, "seconds": time.perf_counter() - started})
        return Resident(
            name=name, kind=record.kind, memory=memory, generation=self.host.generation,
            info=info, keep_alive=-1 if name in m.pinned else m.keep_alive,
        )

    async def _load_cpu(self, name: str) -> None:
        """Have a host that has not said so load its CPU variant and name it, before its
        first chat model: a SIGILL while loading one is then blamed on the variant too."""
        running = self.variant_crashes.host
        if running is not None and running[0] == self.host.pid:
            return
        crashes = self.variant_crashes
        reply = await self._host_load(
            name, "cpu",
            "Restart the daemon (it forgets the variants that died with SIGILL), or set "
            "models.cpu_variant to one that runs here." if crashes.avoid else
            'Set models.cpu_variant = "auto", or rebuild with `make install`.',
            cpu_variant=self.settings.models.cpu_variant, avoid=crashes.avoid)
        crashes.running(reply)

    async def _host_load(self, name: str, op: str, remedy: str, **fields: Any) -> dict[str, Any]:
        """The host's answer to ``op``, a step of loading model ``name``: a host killed or hung
        meanwhile fails it as a request (not the file's fault), anything else as a load,
        with ``remedy``."""
        try:
            return await self.host.call(op, **fields)
        except HostError as exc:
            if exc.kind in HOST_GONE:
                raise self._request_error(name, exc) from None
            raise ModelLoadError(f"model {name!r} failed to load: {exc.message}",
                                 remedy) from None

    def _request_error(self, model: str, exc: HostError,
                       prompt_field: str = "messages") -> Exception:
        """:func:`request_error`, saying so when the host died of its CPU variant."""
        return (self.variant_crashes.request_error(model, exc)
                or request_error(model, exc, prompt_field))

    async def _make_room(self, size: int, keep: str) -> None:
        budget = self.settings.models.memory_budget_mb << 20
        while (victim := next_victim(self.resident.values(), size, keep, budget)) is not None:
            log.info("evicting model for memory budget", extra={"model": victim.name})
            await self.unload(victim.name)

    async def unload(self, name: str) -> bool:
        resident = self.resident.pop(name, None)
        if resident is None or resident.generation != self.host.generation:
            return False
        op = "unload" if resident.kind == "chat" else "unload_embedding"
        with contextlib.suppress(HostError):
            await self.host.call(op, model=name)
        return True

    async def reap_idle(self) -> None:
        """Unload models idle past their keep-alive. Runs until cancelled."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for resident in list(self.resident.values()):
                if resident.in_use or resident.pinned:
                    continue
                if now - resident.last_used >= resident.keep_alive:
                    await self.unload(resident.name)

    # -- the Backend contract ----------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        infos = []
        for status in registry.list_models(self.settings):
            if not status.installed:
                continue
            infos.append(ModelInfo(
                name=status.name, kind=status.kind,
                context_length=int(status.facts.get("context_length") or 0),
                details={"loaded": self._live(status.name) is not None},
            ))
        infos.extend(self.backends.models())
        infos.extend(self.engines.models())
        return infos

    async def chat(
        self, model: str, messages: list[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        self._check_params(model, params)
        if model in self.backends:
            deltas = self.backends[model].chat(model, messages, params)
            async for delta in self.backends.stream(model, deltas):
                yield delta
            return
        engine = self.engines.serving(model)
        if engine is not None:
            async for delta in self.engines.stream(engine, engine.chat(model, messages, params)):
                yield delta
            return
        async for delta in self._generate(
            model, "chat", "messages", params,
            messages=[host_message(m) for m in messages],
        ):
            yield delta

    async def complete(
        self, model: str, prompt: str, params: GenerationParams
    ) -> AsyncIterator[Delta]:
        self._check_params(model, params)
        if model in self.backends:
            deltas = self.backends[model].complete(model, prompt, params)
            async for delta in self.backends.stream(model, deltas):
                yield delta
            return
        engine = self.engines.serving(model)
        if engine is not None:
            async for delta in self.engines.stream(engine, engine.complete(model, prompt, params)):
                yield delta
            return
        async for delta in self._generate(model, "complete", "prompt", params, prompt=prompt):
            yield delta

    def reports_logprobs(self, model: str) -> bool:
        backend: Backend | None = self.backends.get(model) or self.engines.of(model)
        return backend.reports_logprobs(model) if backend is not None else True

    def _check_params(self, model: str, params: GenerationParams) -> None:
        backend: Backend | None = self.backends.get(model) or self.engines.of(model)
        check_params(self.settings, backend, model, params)

    async def _generate(
        self, model: str, op: str, prompt_field: str, params: GenerationParams, **prompt: Any,
    ) -> AsyncIterator[Delta]:
        """Run ``op`` (``chat`` or ``complete``) in the model host on ``prompt`` (its fields of
        the request, which ``prompt_field`` names in errors), in a slot of ``model``'s queue."""
        async with self.queue(model).slot():
            resident = await self.load(model)
            if resident.kind != "chat":
                raise RequestError(
                    f"model {model!r} is an embedding model; it cannot generate text",
                    param="model",
                )
            resident.in_use += 1
            try:
                # Calls begun under auto are shaped when the setting allows and a grammar can
                # enforce every function's schema.
                sent = {**host_params(params), "call_grammar": (
                    self.settings.models.tool_call_grammar
                    and openai_tools.enforceable(params.tools))}
                replies = self.host.stream(op, model=model, params=sent, **prompt)
                try:
                    async for reply in replies:
                        index = int(reply.get("index", 0))
                        if "delta" in reply:
                            yield Delta(reply["delta"], index=index,
                                        logprobs=reply.get("logprobs"))
                        elif "tool_call" in reply:
                            yield Delta("", tool_calls=(ToolCall(**reply["tool_call"]),),
                                        index=index)
                        elif "done" in reply or "finished" in reply:  # the last reply, or one
                            done = reply.get("done") or reply["finished"]
                            yield Delta(
                                "", finish_reason=done["finish_reason"], index=index,
                                prompt_tokens=done["prompt_tokens"],
                                completion_tokens=done["completion_tokens"],
                                timings=done["timings"], logprobs=done.get("logprobs"),
                            )
                except HostError as exc:
                    raise self._request_error(model, exc, prompt_field) from None
                finally:
                    await close_stream(replies)
            finally:
                resident.in_use -= 1
                resident.last_used = time.monotonic()
                if resident.keep_alive == 0 and resident.in_use == 0:
                    await self.unload(model)

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """The daemon's own embedding (routing, documents): never refused for a full queue."""
        if model in self.backends:
            try:
                return await self.backends[model].embed(model, texts)
            except AssistantError:
                raise
            except Exception as exc:
                raise self.backends.failed(model, exc) from exc
        engine = self.engines.serving(model)
        if engine is not None:
            async with self.engines.slot(engine):
                return await engine.embed(model, texts)
        return await self._embed(model, texts)

    async def _embed(self, model: str, texts: list[str]) -> list[list[float]]:
        resident = await self.load(model)
        if resident.kind != "embedding":
            raise RequestError(f"model {model!r} is not an embedding model", param="model")
        resident.in_use += 1
        try:
            result = await self.host.call("embed", cancellable=True, model=model, texts=texts,
                                          batch=self.settings.embeddings.batch)
        except HostError as exc:
            raise self._request_error(model, exc) from None
        finally:
            resident.in_use -= 1
            resident.last_used = time.monotonic()
        vectors: list[list[float]] = result["vectors"]
        return vectors

    async def forget_states(self, tag: str) -> int:
        """Delete conversation ``tag``'s saved model states: in the host, then on disk."""
        from assistant.models.kv_cache import forget_on_disk

        removed = 0
        if any(r.kind == "chat" for r in self.resident.values()):
            with contextlib.suppress(HostError):  # a host that is gone holds no states
                removed += int((await self.host.call("forget", tag=tag)).get("removed", 0))
        root = data_dir(self.settings) / "states"
        return removed + await asyncio.to_thread(forget_on_disk, root, tag)

    async def count_tokens(self, model: str, messages: list[ChatMessage]) -> int:
        if model in self.backends:
            return await self.backends[model].count_tokens(model, messages)
        engine = self.engines.serving(model)
        if engine is not None:
            return await engine.count_tokens(model, messages)  # its tokenizer's, or above
        await self.load(model)
        try:
            result = await self.host.call(
                "count", model=model, messages=[host_message(m) for m in messages])
        except HostError as exc:
            if exc.kind in HOST_GONE:  # a 503 to retry, as a generation's is
                raise self._request_error(model, exc) from None
            raise
        return int(result["tokens"])

    async def context_length(self, model: str) -> int | None:
        """``models.context_length`` (0: the model's own), as the load path passes it to the
        host, capped by the trained context: past it a model runs but loses the thread. A
        plugin backend that fails to say is taken as not knowing (the model list, compaction
        and every turn ask, and a broken plugin must not take those down)."""
        if model in self.backends:
            try:
                return await self.backends[model].context_length(model)
            except Exception:
                log.warning("a plugin backend failed to give a context length",
                            extra={"model": model}, exc_info=True)
                return None
        engine = self.engines.of(model)
        if engine is not None:  # as configured: engines do not say
            return await engine.context_length(model)
        resident = self._live(model)
        if resident is not None and resident.info.get("n_ctx"):
            return int(resident.info["n_ctx"])  # loaded with footprint.planned_context
        try:
            record = registry.resolve(self.settings, model)
        except ModelNotFound:
            return None
        except ModelError as exc:  # a damaged file: the listing must still answer
            log.warning("model unreadable", extra={"model": model, "error": exc.message})
            return None
        if record.kind != "chat":
            return None
        return footprint.planned_context(self.settings.models, record.facts) or None

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "name": r.name, "kind": r.kind, "size_bytes": r.memory.file_bytes,
                "memory": r.memory.summary(),
                "in_use": r.in_use, "keep_alive": r.keep_alive, "pinned": r.pinned,
                "idle_s": round(time.monotonic() - r.last_used, 1),
                "queue": self.queue(r.name).depth,
            }
            for r in self.resident.values() if r.generation == self.host.generation
        ]

