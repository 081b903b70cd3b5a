"""A daemon-less model backend for evaluation: the daemon's ModelManager, run in-process.

``assistant eval`` starts its own model host child process (the same code the daemon uses, so
llama.cpp still never loads into this process) and embeds with MiniLM in-process. Nothing
talks to a running daemon, so an evaluation never competes with, or disturbs, a user's turns.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from assistant.context import BackendContext

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.daemon.model_manager import ModelManager
    from assistant.embedding import MiniLMEmbedder
    from assistant.skills import DocumentSearch


class EvalBackend:
    """Owns a :class:`ModelManager` (chat) and a :class:`MiniLMEmbedder` (embeddings)."""

    def __init__(self, settings: Settings) -> None:
        from assistant.daemon.model_manager import ModelManager
        from assistant.embedding import MiniLMEmbedder
        from assistant.locations import models_dir

        # Saved conversation states stay in RAM: an evaluation neither fills the user's state
        # directory nor, run again, restores the prompts of the run before (which would make
        # its seconds a measure of the disk, not of the model).
        models = settings.models.model_copy(update={"state_disk_mb": 0})
        settings = settings.model_copy(update={"models": models})
        self.settings = settings
        self.models: ModelManager = ModelManager(settings)
        self.embedder: MiniLMEmbedder = MiniLMEmbedder(models_dir(settings, create=False))
        self.models.add_backend(self.embedder)

    def context(
        self, model: str, config: dict[str, Any] | None = None,
        documents: DocumentSearch | None = None, history: Any = (),
    ) -> BackendContext:
        # In-process evaluation runs as this machine's user: a skill may read its files.
        return BackendContext(self.models, model, embedding_model=self.embedder.name,
                              embedding_backend=self.embedder, config=config,
                              documents=documents, history=history, local_files=True)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.embedder.embed(self.embedder.name, texts)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.models.host.stop()


@contextlib.asynccontextmanager
async def eval_backend(settings: Settings) -> AsyncIterator[EvalBackend]:
    backend = EvalBackend(settings)
    try:
        yield backend
    finally:
        await backend.close()
