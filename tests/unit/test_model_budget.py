"""The memory budget counts what a model will take: its file, and a chat model's KV cache for
``parallel`` sequences and its saved states (models/footprint.py). No model host is started:
its ``call`` answers as the host does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.config import load_settings
from assistant.daemon.model_manager import ModelManager
from assistant.daemon.status import Access, DaemonStatus
from assistant.error_codes import http_error
from assistant.errors import MemoryBudgetFull
from assistant.models import footprint, registry
from assistant.models.gguf import read_gguf
from tests.conftest import TEST_MODELS_DIR

gguf = pytest.importorskip("gguf")

MIB = 1 << 20

# The KV cache llama.cpp allocated (llama-cpp-python 0.3.36, f16 K and V), from its log:
# n_ctx 4096, one sequence, e.g. for smollm2 "llama_kv_cache: size = 90.00 MiB (4096 cells,
# 30 layers, 1/1 seqs), K (f16): 45.00 MiB, V (f16): 45.00 MiB"; and n_ctx 16384 with
# n_seq_max 4 (four sequences of 4096 tokens), unified or not: "size = 360.00 MiB (…)". The
# formula gives exactly these.
LLAMA_CPP_KV_MIB = [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", 90.0, 360.0),
    ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 48.0, 192.0),
    ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 112.0, 448.0),
]


@pytest.mark.parametrize(("file", "one", "four"), LLAMA_CPP_KV_MIB)
def test_the_kv_cache_is_the_size_llama_cpp_allocates(file: str, one: float,
                                                      four: float) -> None:
    path = TEST_MODELS_DIR / file
    if not path.exists():
        if file.startswith("SmolLM2"):
            pytest.fail("smollm2-135m is not pulled (make test-models)")
        pytest.skip(f"{file} is not pulled (make run pulls it)")
    facts = read_gguf(path).summary()
    assert footprint.kv_cache_bytes(facts, 4096) == pytest.approx(one * MIB, rel=0.02)
    assert footprint.kv_cache_bytes(facts, 4096, 4) == pytest.approx(four * MIB, rel=0.02)


def test_widths_the_file_gives_replace_the_default_and_missing_facts_count_nothing() -> None:
    facts = {"block_count": 2, "embedding_length": 64, "head_count": 4}
    assert footprint.kv_cache_bytes(facts, 10) == 10 * 2 * 4 * (16 + 16) * 2  # every head kept
    facts |= {"head_count_kv": 1, "key_length": 32, "value_length": 8}
    assert footprint.kv_cache_bytes(facts, 10, 3) == 10 * 3 * 2 * 1 * (32 + 8) * 2
    assert footprint.kv_cache_bytes({"block_count": 2, "embedding_length": 64}, 10) == 0


def test_an_embedding_model_takes_its_file_and_one_batch() -> None:
    models = load_settings().models
    planned = footprint.plan("embedding", {}, 1000, models, embed_batch=8)
    assert planned.work_bytes == 8 * footprint.EMBED_BYTES_PER_TEXT
    assert planned.total_bytes == 1000 + 8 * footprint.EMBED_BYTES_PER_TEXT


# -- the budget --------------------------------------------------------------------------------

def build_chat(path: Path) -> Path:
    """A model file of a few KB whose KV cache takes 0.5 MiB a token: 32 layers × 32 heads ×
    (128 + 128) widths × 2 bytes."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(1024)
    writer.add_block_count(32)
    writer.add_embedding_length(4096)
    writer.add_head_count(32)
    writer.add_head_count_kv(32)
    writer.add_chat_template("{{ messages }}")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def manager(tmp_path: Path, budget_mb: int, parallel: int = 1, state_ram_mb: int = 0,
            names: tuple[str, ...] = ("a", "b"), pinned: tuple[str, ...] = (),
            ) -> tuple[ModelManager, list[dict[str, Any]]]:
    """Models ``names`` (128 MiB of KV cache each a sequence: context 256), and the
    requests their model host was sent."""
    settings = load_settings({
        "paths": {"models_dir": str(tmp_path / "models")},
        "models": {"context_length": 256, "memory_budget_mb": budget_mb,
                   "parallel": parallel, "state_ram_mb": state_ram_mb,
                   "pinned": list(pinned)},
    })
    for name in names:
        registry.add(settings, build_chat(tmp_path / f"{name}.gguf"), name=name)
    models = ModelManager(settings)
    sent: list[dict[str, Any]] = []

    async def call(op: str, **request: Any) -> dict[str, Any]:
        if op == "cpu":  # the host names its CPU variant before its first chat model
            return {}
        sent.append({"op": op, **request})
        return {"n_ctx": request["n_ctx"]} if op == "load" else {}

    models.host.call = call  # type: ignore[method-assign]
    return models, sent


@pytest.mark.asyncio
@pytest.mark.parametrize(("parallel", "state_ram_mb", "both_fit"), [
    (1, 0, True),  # 2 × 128 MiB of KV cache within 300 MiB
    (2, 0, False),  # 2 × 256 MiB
    (1, 100, False),  # 2 × (128 + 100) MiB
])
async def test_the_budget_counts_the_kv_cache_of_every_sequence_and_the_states(
        tmp_path: Path, parallel: int, state_ram_mb: int, both_fit: bool) -> None:
    models, sent = manager(tmp_path, 300, parallel, state_ram_mb)
    await models.load("a")
    await models.load("b")
    assert set(models.resident) == ({"a", "b"} if both_fit else {"b"})
    assert ({"op": "unload", "model": "a"} in sent) is not both_fit


@pytest.mark.asyncio
async def test_a_chat_model_is_loaded_for_parallel_sequences_and_says_what_it_takes(
        tmp_path: Path) -> None:
    models, sent = manager(tmp_path, 8192, parallel=4, state_ram_mb=64)
    await models.load("a")
    assert (sent[0]["op"], sent[0]["n_ctx"], sent[0]["parallel"]) == ("load", 256, 4)
    size = (tmp_path / "a.gguf").stat().st_size
    memory = {"file_bytes": size, "kv_bytes": 4 * 128 * MIB, "state_bytes": 64 * MIB,
              "context": 256, "sequences": 4, "work_bytes": 0,
              "total_bytes": size + 576 * MIB}
    [status] = models.status()
    assert status["memory"] == memory and status["size_bytes"] == size
    health = DaemonStatus(models, tmp_path / "s.sock", Access()).health()
    assert health["memory"] == {"a": size + 576 * MIB}
    assert registry.describe(models.settings, "a")["memory"] == memory


# -- pinned models ------------------------------------------------------------------------------

def unloaded(sent: list[dict[str, Any]]) -> list[str]:
    return [r["model"] for r in sent if r["op"] == "unload"]


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["keep_alive", "config"])
async def test_a_pinned_model_is_never_evicted_the_next_least_recently_used_is(
        tmp_path: Path, how: str) -> None:
    # Two of the three fit in 300 MiB; "a", pinned, is the least recently used.
    models, sent = manager(tmp_path, 300, names=("a", "b", "c"),
                           pinned=("a",) if how == "config" else ())
    await models.load("a", keep_alive=-1 if how == "keep_alive" else None)
    await models.load("b")
    await models.load("c")
    assert set(models.resident) == {"a", "c"} and unloaded(sent) == ["b"]
    pinned = {m["name"]: (m["pinned"], m["keep_alive"]) for m in models.status()}
    assert pinned == {"a": (True, -1), "c": (False, 1800)}


@pytest.mark.asyncio
async def test_a_load_that_cannot_fit_beside_the_pinned_models_is_refused_naming_them(
        tmp_path: Path) -> None:
    models, sent = manager(tmp_path, 300, names=("a", "b", "c"), pinned=("a", "b"))
    await models.load("a")
    await models.load("b")
    with pytest.raises(MemoryBudgetFull) as refused:
        await models.load("c")
    assert "pinned models (a, b)" in refused.value.message
    assert "c" not in models.resident and unloaded(sent) == []
    assert not any(r["op"] == "load" and r["model"] == "c" for r in sent)
    status, body, headers = http_error(refused.value)
    assert (status, body["error"]["code"], headers) == (503, "memory_budget_full", {})


@pytest.mark.asyncio
async def test_loading_again_with_a_keep_alive_unpins_as_in_ollama(tmp_path: Path) -> None:
    models, sent = manager(tmp_path, 300, names=("a", "b", "c"))
    await models.load("a", keep_alive=-1)
    await models.load("a", keep_alive=60)  # the last keep_alive wins
    await models.load("b")
    await models.load("c")
    assert set(models.resident) == {"b", "c"} and unloaded(sent) == ["a"]


@pytest.mark.asyncio
async def test_busy_models_are_not_evicted_and_the_load_goes_ahead_over_budget(
        tmp_path: Path) -> None:
    models, sent = manager(tmp_path, 300, names=("a", "b", "c"), pinned=("a",))
    await models.load("a")
    (await models.load("b")).in_use = 1  # mid-reply
    await models.load("c")
    assert set(models.resident) == {"a", "b", "c"} and unloaded(sent) == []
