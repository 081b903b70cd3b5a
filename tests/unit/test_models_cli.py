"""`assistant models …` end to end through click: output, --json, errors at the edge, rm."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.models import catalog, install
from assistant.models.catalog import Artifact, CatalogEntry, Source

gguf = pytest.importorskip("gguf")


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def build_gguf(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(4096)
    writer.add_file_type(15)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def own_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    models = tmp_path / "models"
    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(models))
    return models


def test_list_prints_the_catalog(own_models_dir: Path) -> None:
    code, out, _ = run("models", "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "KIND", "SIZE", "QUANT", "CONTEXT",
                                           "TEMPLATE", "INSTALLED"]
    for name in catalog.CATALOG:
        assert name in out
    default_line = next(line for line in out.splitlines() if "smollm2-135m" in line)
    assert default_line.startswith("*")


def test_list_json(own_models_dir: Path) -> None:
    code, out, _ = run("models", "list", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and set(catalog.CATALOG) <= set(rows)
    assert rows["smollm2-135m"]["default"] is True
    assert rows["qwen2.5-coder-1.5b"]["installed"] is False


def test_add_show_rm_a_local_model(own_models_dir: Path, tmp_path: Path) -> None:
    path = build_gguf(tmp_path / "tiny.gguf")
    code, out, _ = run("models", "add", str(path), "--name", "tiny")
    assert code == 0 and "added tiny" in out
    code, out, _ = run("models", "show", "tiny", "--json")
    info = json.loads(out)
    assert info["path"] == str(path.resolve())
    assert (info["architecture"], info["context_length"], info["quantization"]) == (
        "qwen2", 4096, "Q4_K_M")
    assert info["chat_template"] is False and info["parameters"] == 32
    code, out, _ = run("models", "show", "tiny")
    assert "context:" in out and "4096" in out and "qwen2" in out
    assert "planned memory:" in out and "KV cache 0 MiB (4 × 4096 tokens)" in out  # no heads
    code, out, _ = run("models", "list")
    assert "tiny" in out
    code, out, _ = run("models", "rm", "tiny")
    assert code == 0 and path.exists()
    assert "tiny" not in run("models", "list")[1]


def test_errors_are_rendered_once_at_the_edge(own_models_dir: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("just text\n")
    code, _, err = run("models", "add", str(notes))
    assert code == 1 and err.startswith("error: ") and "neither a GGUF nor an ONNX" in err
    assert "Traceback" not in err
    code, _, err = run("models", "show", "nope")
    assert code == 1 and "models add" in err
    code, _, err = run("models", "pull", "nope")
    assert code == 1 and "not in the catalog" in err


def test_rm_of_a_catalog_model_asks_first(
    own_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"model bytes"
    artifact = Artifact("fake.gguf", hashlib.sha256(data).hexdigest(), len(data),
                        (Source("x", "1", "x/fake.gguf"),))
    monkeypatch.setitem(catalog.CATALOG, "fake",
                        CatalogEntry("fake", "chat", "test", "Q4_1", (artifact,)))
    own_models_dir.mkdir(mode=0o700)
    path = own_models_dir / "fake.gguf"
    path.write_bytes(data)
    install.write_stamp(path, artifact.sha256)
    code, _, err = run("models", "rm", "fake", input="n\n")
    assert code != 0 and "Aborted" in err and path.exists()
    code, out, _ = run("models", "rm", "fake", "--yes")
    assert code == 0 and "removed fake" in out
    assert not path.exists() and not install.stamp_path(path).exists()
    code, _, err = run("models", "rm", "fake", "--yes")
    assert code == 1 and "not installed" in err
