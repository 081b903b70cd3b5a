"""A client that leaves while its model loads does not leave the model loaded and unaccounted.

``ModelManager.load`` recorded a model as resident only after the host's reply; a request
cancelled in between (``/v1/embeddings`` cancels its job when the client disconnects) left the
model in the host, missing from ``/api/status``, uncounted by the memory budget and out of
``unload``'s reach (it unloads only what it recorded). On the code before, the status below
was empty while the host held ``minilm-l6``. Now the load runs on, shielded, and is recorded.

On the real model host with MiniLM; the reply to ``load_embedding`` is held a moment after it
arrives, so the cancel lands exactly where a client's disconnect did.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from assistant.config import load_settings
from assistant.daemon.embeddings import EmbeddingJobs
from assistant.daemon.model_manager import ModelManager
from assistant.models.host_process import HostProcess
from tests.integration.conftest import EMBED_MODEL, require_models

pytestmark = pytest.mark.asyncio


class ReplyHeld(HostProcess):
    """The real host; a ``load_embedding`` reply is read, then held until it is released."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded = asyncio.Event()
        self.release = asyncio.Event()

    async def call(self, op: str, *, cancellable: bool = False, **fields: Any) -> dict[str, Any]:
        result = await super().call(op, cancellable=cancellable, **fields)
        if op == "load_embedding":
            self.loaded.set()
            await self.release.wait()
        return result


async def test_a_load_whose_caller_left_is_recorded_and_can_be_unloaded() -> None:
    require_models()
    host = ReplyHeld()
    settings = load_settings()
    manager = ModelManager(settings, host)
    try:
        job = asyncio.create_task(EmbeddingJobs(manager, settings.embeddings).run(
            EMBED_MODEL, ["hello"]))
        await asyncio.wait_for(host.loaded.wait(), 60)
        job.cancel()  # what unless_disconnected does when the client leaves
        with pytest.raises(asyncio.CancelledError):
            await job
        host.release.set()
        await asyncio.sleep(0.1)
        held = (await host.call("info"))["embedders"]
        assert held == [EMBED_MODEL]
        assert [m["name"] for m in manager.status()] == [EMBED_MODEL], (
            "the host holds the model, the daemon does not know")
        assert await manager.unload(EMBED_MODEL)
        assert (await host.call("info"))["embedders"] == []
    finally:
        await host.stop()
