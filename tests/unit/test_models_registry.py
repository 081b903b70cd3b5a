"""The registry: catalog state, `add` of local GGUF / ONNX files, resolve, list, rm."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.config import Settings, load_settings
from assistant.errors import ModelError, ModelIntegrityError, ModelNotFound
from assistant.models import registry
from assistant.models.onnx_info import check_loadable, read_onnx
from tests.conftest import TEST_MODELS_DIR

gguf = pytest.importorskip("gguf")


def build_gguf(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(1024)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_file_type(1)
    writer.add_chat_template("{{ messages }}")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- a hand-encoded ONNX model: y = Identity(x), x and y float [batch, 8] --------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _msg(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, dims: list[int | str]) -> bytes:
    shape = b"".join(
        _msg(1, _int(1, d) if isinstance(d, int) else _msg(2, d.encode())) for d in dims
    )
    tensor_type = _int(1, 1) + _msg(2, shape)
    return _msg(1, name.encode()) + _msg(2, _msg(1, tensor_type))


def onnx_bytes() -> bytes:
    node = _msg(1, b"x") + _msg(2, b"y") + _msg(3, b"id") + _msg(4, b"Identity")
    graph = (_msg(1, node) + _msg(2, b"g") + _msg(11, _value_info("x", ["batch", 8]))
             + _msg(12, _value_info("y", ["batch", 8])))
    return (_int(1, 8) + _msg(2, b"test") + _msg(7, graph)
            + _msg(8, _msg(1, b"") + _int(2, 17)))


def build_onnx(directory: Path, tokenizer: bool = True) -> Path:
    path = directory / "embed.onnx"
    path.write_bytes(onnx_bytes())
    if tokenizer:
        (directory / "tokenizer.json").write_text('{"model": {"type": "WordPiece"}}')
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"paths": {"models_dir": str(tmp_path / "models")}})


def registry_file(settings: Settings) -> Path:
    return registry.registry_path(settings)


def test_list_shows_every_catalog_model_not_installed(settings: Settings) -> None:
    statuses = {s.name: s for s in registry.list_models(settings)}
    assert set(statuses) == {"qwen2.5-coder-0.5b", "smollm2-135m", "qwen2.5-coder-1.5b",
                             "minilm-l6"}
    assert not any(s.installed for s in statuses.values())
    # conftest sets ASSISTANT_MODEL=smollm2-135m; minilm-l6 is the default embedding model.
    assert {n for n, s in statuses.items() if s.default} == {"smollm2-135m", "minilm-l6"}
    assert statuses["minilm-l6"].kind == "embedding"
    assert statuses["smollm2-135m"].facts["quantization"] == "Q4_1"


def test_resolve_explains_how_to_get_a_model(settings: Settings) -> None:
    with pytest.raises(ModelNotFound) as err:
        registry.resolve(settings, "smollm2-135m")
    assert "assistant models pull smollm2-135m" in str(err.value)
    with pytest.raises(ModelNotFound) as err:
        registry.resolve(settings, "nothing-like-it")
    assert "models add" in str(err.value) and "models pull" in str(err.value)


def test_add_gguf_in_place_and_resolve(settings: Settings, tmp_path: Path) -> None:
    path = build_gguf(tmp_path / "My-Model.F16.gguf")
    record = registry.add(settings, path)
    assert record.name == "My-Model.F16"
    resolved = registry.resolve(settings, "My-Model.F16")
    assert resolved.path == path.resolve() and resolved.source == "local"
    assert resolved.kind == "chat" and resolved.tokenizer_path is None
    assert resolved.facts["context_length"] == 1024
    assert resolved.facts["chat_template"] is True
    assert resolved.facts["quantization"] == "F16"
    assert not (settings_models := Path(settings.paths.models_dir)).exists() or not any(
        settings_models.iterdir())  # nothing copied
    status = {s.name: s for s in registry.list_models(settings)}["My-Model.F16"]
    assert status.installed and status.source == "local"


def test_add_refuses_a_non_model_file(settings: Settings, tmp_path: Path) -> None:
    for name, content in (("notes.txt", b"hello\n"), ("fake.gguf", b"GGUF" + b"\xff" * 40),
                          ("fake.onnx", b"\x08\x08" + b"\xff" * 40)):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelIntegrityError):
            registry.add(settings, path, name="x")
    assert not registry_file(settings).exists()
    assert "x" not in {s.name for s in registry.list_models(settings)}


@pytest.mark.parametrize("bad", ["a/b", "..", "a..b", "a\x00b", "a b", "tab\there", "", "-x"])
def test_add_refuses_bad_names(settings: Settings, tmp_path: Path, bad: str) -> None:
    path = build_gguf(tmp_path / "m.gguf")
    with pytest.raises(ModelError, match="cannot use"):
        registry.add(settings, path, name=bad)
    assert not registry_file(settings).exists()


def test_add_refuses_catalog_and_duplicate_names(settings: Settings, tmp_path: Path) -> None:
    path = build_gguf(tmp_path / "m.gguf")
    with pytest.raises(ModelError, match="catalog"):
        registry.add(settings, path, name="smollm2-135m")
    registry.add(settings, path, name="mine")
    with pytest.raises(ModelError, match="already registered"):
        registry.add(settings, path, name="mine")


def test_registry_is_written_atomically(settings: Settings, tmp_path: Path) -> None:
    registry.add(settings, build_gguf(tmp_path / "m.gguf"), name="mine")
    data = json.loads(registry_file(settings).read_text())
    assert data["models"]["mine"]["path"] == str((tmp_path / "m.gguf").resolve())
    leftovers = [p.name for p in registry_file(settings).parent.iterdir()
                 if p.name.endswith(".tmp")]
    assert leftovers == []


def test_facts_are_cached_by_size_and_mtime(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = build_gguf(tmp_path / "m.gguf")
    registry.add(settings, path, name="mine")
    calls: list[Path] = []
    real = registry.read_facts

    def counting(p: Path) -> dict[str, Any]:
        calls.append(p)
        return real(p)

    monkeypatch.setattr(registry, "read_facts", counting)
    registry.list_models(settings)
    registry.resolve(settings, "mine")
    assert calls == []
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    registry.list_models(settings)
    assert calls == [path.resolve()]
    registry.list_models(settings)  # cached again
    assert len(calls) == 1


def test_facts_an_older_reader_cached_are_read_again(settings: Settings, tmp_path: Path) -> None:
    registry.add(settings, build_gguf(tmp_path / "m.gguf"), name="mine")
    data = json.loads(registry_file(settings).read_text())
    facts = data["models"]["mine"]["facts"]
    del facts["head_count"]
    facts["facts_version"] = 1  # before the KV cache's size was read
    registry_file(settings).write_text(json.dumps(data))
    again = registry.resolve(settings, "mine").facts
    assert again["head_count"] == 4 and again["facts_version"] == registry.FACTS_VERSION


def test_a_vanished_file_is_reported(settings: Settings, tmp_path: Path) -> None:
    path = build_gguf(tmp_path / "m.gguf")
    registry.add(settings, path, name="mine")
    path.unlink()
    status = {s.name: s for s in registry.list_models(settings)}["mine"]
    assert not status.installed and status.problem and "gone" in status.problem
    with pytest.raises(ModelNotFound, match="gone"):
        registry.resolve(settings, "mine")


def test_rm_forgets_a_local_model_and_keeps_its_file(settings: Settings, tmp_path: Path) -> None:
    path = build_gguf(tmp_path / "m.gguf")
    registry.add(settings, path, name="mine")
    assert registry.removal_plan(settings, "mine").files == ()
    registry.remove(settings, "mine")
    assert path.exists()
    with pytest.raises(ModelNotFound):
        registry.resolve(settings, "mine")
    with pytest.raises(ModelNotFound):
        registry.remove(settings, "mine")


def test_onnx_reader_and_runtime_check(tmp_path: Path) -> None:
    path = build_onnx(tmp_path)
    facts = read_onnx(path)
    assert [t.name for t in facts.inputs] == ["x"]
    assert facts.embedding_dimension == 8 and facts.opset == 17
    assert check_loadable(path)["inputs"] == ["x"]
    whole = path.read_bytes()
    for n in range(1, len(whole), 3):
        path.write_bytes(whole[:n])
        with pytest.raises(ModelIntegrityError):
            read_onnx(path)


def test_add_onnx_needs_a_tokenizer(settings: Settings, tmp_path: Path) -> None:
    path = build_onnx(tmp_path, tokenizer=False)
    with pytest.raises(ModelError, match="tokenizer"):
        registry.add(settings, path, name="emb")
    other = tmp_path / "elsewhere.json"
    other.write_text('{"model": {}}')
    record = registry.add(settings, path, name="emb", tokenizer=other)
    assert record.kind == "embedding" and record.tokenizer_path == other.resolve()


def test_add_onnx_with_tokenizer_beside_it(settings: Settings, tmp_path: Path) -> None:
    record = registry.add(settings, build_onnx(tmp_path))
    assert record.name == "embed" and record.kind == "embedding"
    assert record.tokenizer_path == (tmp_path / "tokenizer.json").resolve()
    assert registry.resolve(settings, "embed").facts["embedding_dimension"] == 8


def test_real_catalog_models_when_pulled() -> None:
    settings = load_settings()  # conftest points the models dir at the shared test models
    if not (TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf.sha256").exists():
        pytest.fail("test models are not pulled (make test-models)")
    smol = registry.resolve(settings, "smollm2-135m")
    assert smol.facts["context_length"] == 8192 and smol.facts["chat_template"] is True
    mini = registry.resolve(settings, "minilm-l6")
    assert mini.tokenizer_path is not None and mini.tokenizer_path.exists()
    assert mini.facts["embedding_dimension"] == 384
    assert mini.facts["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
