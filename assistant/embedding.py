"""An in-process MiniLM sentence embedder: onnxruntime + tokenizers, no model host needed.

The daemon embeds through the model host; this class exists for the CLI (``assistant routing
explain`` / ``eval``), benchmarks and tests, which must work without a daemon. It speaks the
:class:`~assistant.models.backend.Backend` contract so it can stand in for the host anywhere.
onnxruntime and tokenizers are imported on first use, never at import time.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.errors import ModelNotFound
from assistant.models.backend import Backend, ChatMessage, Delta, GenerationParams, ModelInfo

if TYPE_CHECKING:
    from assistant.models.onnx import OnnxEmbedder

MODEL_NAME = "minilm-l6"
MODEL_FILE = "all-MiniLM-L6-v2.int8.onnx"
TOKENIZER_FILE = "all-MiniLM-L6-v2.tokenizer.json"
MAX_TOKENS = 256


class MiniLMEmbedder(Backend):
    """Mean-pooled, L2-normalised 384-d embeddings of all-MiniLM-L6-v2 (int8 ONNX)."""

    def __init__(self, models_dir: Path, threads: int = 0, name: str = MODEL_NAME) -> None:
        self.models_dir = Path(models_dir)
        self.name = name
        self.threads = threads
        self._impl: OnnxEmbedder | None = None

    @property
    def model_path(self) -> Path:
        return self.models_dir / MODEL_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.models_dir / TOKENIZER_FILE

    def _load(self) -> None:
        if self._impl is not None:
            return
        for path in (self.model_path, self.tokenizer_path):
            if not path.exists():
                raise ModelNotFound(
                    f"embedding model file {path} is missing.",
                    f"Run `assistant models pull {self.name}`.",
                )
        from assistant.models.onnx import OnnxEmbedder

        self._impl = OnnxEmbedder(
            str(self.model_path), str(self.tokenizer_path),
            n_threads=self.threads or len(os.sched_getaffinity(0)),
        )

    def embed_sync(self, texts: list[str]) -> list[list[float]]:
        """Blocking embedding; callers in an event loop use :meth:`embed`."""
        self._load()
        assert self._impl is not None
        return self._impl.embed(texts)

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(self.name, "embedding", MAX_TOKENS, details={"dim": 384})]

    async def chat(
        self, model: str, messages: list[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        raise ModelNotFound(f"{self.name} is an embedding model; it cannot chat.")
        yield Delta("")  # pragma: no cover - makes this an async generator

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        # Short batches (a routed utterance) take a few ms: cheaper than a thread hop.
        if len(texts) <= 4:
            return self.embed_sync(texts)
        import asyncio

        return await asyncio.to_thread(self.embed_sync, texts)
