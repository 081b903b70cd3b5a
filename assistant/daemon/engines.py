"""The remote engines of ``[engines.NAME]``: each serves the models named ``NAME/…`` and has a
queue of its own (``max_concurrency`` requests sent at once, ``models.queue`` more wait)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from assistant.daemon.queue import ModelQueue
from assistant.errors import ModelNotFound
from assistant.models.backend import Delta, ModelInfo, closing_stream
from assistant.models.remote import RemoteEngine


class Engines:
    def __init__(self, queue: int) -> None:
        self.queue = queue  # how many requests may wait for each engine
        self.by_name: dict[str, RemoteEngine] = {}
        self.queues: dict[str, ModelQueue] = {}

    def add(self, engine: RemoteEngine) -> None:
        self.by_name[engine.name] = engine
        self.queues[engine.name] = ModelQueue(
            f"engine {engine.name}", engine.settings.max_concurrency, self.queue)

    def of(self, model: str) -> RemoteEngine | None:
        """The engine serving ``model`` (``NAME/…``), if one is configured by that name."""
        name, slash, _ = model.partition("/")
        return self.by_name.get(name) if slash else None

    def serving(self, model: str) -> RemoteEngine | None:
        """The engine of ``model``; ModelNotFound when it is known not to serve it."""
        engine = self.of(model)
        if engine is not None and engine.serves(model) is False:
            listed = ", ".join(engine.names()) or "none"
            raise ModelNotFound(f"engine '{engine.name}' has no model {model!r} (it serves: "
                                f"{listed})", "`assistant models list` shows every model.")
        return engine

    def slot(self, engine: RemoteEngine) -> contextlib.AbstractAsyncContextManager[Any]:
        """A place in ``engine``'s queue (ModelQueue.slot)."""
        return self.queues[engine.name].slot()

    async def stream(self, engine: RemoteEngine, deltas: AsyncIterator[Delta],
                     ) -> AsyncIterator[Delta]:
        """An engine's reply in a slot of its queue: the slot and the engine's response are
        released however the stream ends (closed early included)."""
        async with self.slot(engine), closing_stream(deltas) as stream:
            async for delta in stream:
                yield delta

    def models(self) -> list[ModelInfo]:
        return [info for engine in self.by_name.values() for info in engine.models()]

    async def watch(self) -> None:
        """Keep each engine's listing and state fresh (:meth:`RemoteEngine.watch`). Runs until
        cancelled; an engine that is down holds up nothing else."""
        if self.by_name:
            await asyncio.gather(*(e.watch() for e in self.by_name.values()))

    async def close(self) -> None:
        for engine in self.by_name.values():
            with contextlib.suppress(Exception):
                await engine.aclose()

    def status(self) -> list[dict[str, Any]]:
        return [{**e.status(), "queue": self.queues[e.name].depth}
                for e in self.by_name.values()]

    def problems(self) -> list[str]:
        return [p for e in self.by_name.values() if (p := e.problem()) is not None]
