"""What a model will take in memory once loaded, worked out from its facts before loading it.

The memory budget (``models.memory_budget_mb``) counts this. A chat model takes its file (the
weights), its KV cache and up to ``models.state_ram_mb`` of saved conversation states; an
embedding model takes its file and what one of its batches allocates while it runs
(``embeddings.batch`` texts × :data:`EMBED_BYTES_PER_TEXT`). llama.cpp's compute buffer (about
100 MiB for smollm2, 300 MiB for the Qwen models, whose vocabulary is large) is not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from assistant.config import ModelsSettings

# llama.cpp keeps keys and values as f16 unless told otherwise (type_k, type_v).
KV_VALUE_BYTES = 2
# What onnxruntime allocates per text of a batch of MiniLM-L6 at its 256-token limit (every
# layer's attention maps and activations), from the host's peak RSS: one batch of 8 took
# 82 MB, a job of 64 such texts in batches of 8 took 268 MB (onnxruntime's arena keeps part
# of each batch), so 40 MiB a text of a batch is counted. The model host runs a job's texts
# ``embeddings.batch`` at a time and one batch at a time, so a job never takes more.
EMBED_BYTES_PER_TEXT = 40 << 20


@dataclass(frozen=True)
class Footprint:
    """The bytes a loaded model takes, by what takes them; ``context`` tokens for each of
    ``sequences`` sequences is what its KV cache holds."""

    file_bytes: int
    kv_bytes: int = 0
    state_bytes: int = 0
    context: int = 0
    sequences: int = 0
    work_bytes: int = 0  # an embedding model's: what one batch allocates while it runs

    @property
    def total_bytes(self) -> int:
        return self.file_bytes + self.kv_bytes + self.state_bytes + self.work_bytes

    def summary(self) -> dict[str, int]:
        return {**asdict(self), "total_bytes": self.total_bytes}


def kv_cache_bytes(facts: Mapping[str, Any], context: int, sequences: int = 1) -> int:
    """Bytes of the f16 KV cache llama.cpp allocates for ``sequences`` sequences of ``context``
    tokens of the model ``facts`` (a GGUF file's) describe; 0 when they do not say enough.

    Each token keeps, in each layer, a key of ``head_count_kv × key_length`` values and a
    value of ``head_count_kv × value_length``; both lengths default to
    ``embedding_length / head_count``. An upper bound for models that cache less (sliding-window
    layers, compressed attention).
    """
    layers, width, heads = (_count(facts, k) for k in
                            ("block_count", "embedding_length", "head_count"))
    if not (layers and width and heads):
        return 0
    heads_kv = _count(facts, "head_count_kv") or heads
    key = _count(facts, "key_length") or width // heads
    value = _count(facts, "value_length") or width // heads
    return context * sequences * layers * heads_kv * (key + value) * KV_VALUE_BYTES


def planned_context(models: ModelsSettings, facts: Mapping[str, Any]) -> int:
    """The context a chat model is loaded with, per sequence: ``models.context_length`` (0: the
    model's own) capped by the trained context, which llama.cpp would allocate past and waste.
    0 when neither is known."""
    known = [int(n) for n in (models.context_length, facts.get("context_length")) if n]
    return min(known) if known else 0


def plan(kind: str, facts: Mapping[str, Any], file_bytes: int,
         models: ModelsSettings, *, embed_batch: int) -> Footprint:
    """What a model of ``kind`` with these ``facts`` and file size takes under ``models``,
    an embedding model running ``embed_batch`` texts at a time (``embeddings.batch``)."""
    if kind != "chat":
        return Footprint(file_bytes, work_bytes=embed_batch * EMBED_BYTES_PER_TEXT)
    context = planned_context(models, facts)
    return Footprint(
        file_bytes, kv_cache_bytes(facts, context, models.parallel), models.state_ram_mb << 20,
        context, models.parallel,
    )


def _count(facts: Mapping[str, Any], key: str) -> int:
    value = facts.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
