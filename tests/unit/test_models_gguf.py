"""The GGUF header reader, on files built here with the ``gguf`` package and on broken ones."""

from __future__ import annotations

import contextlib
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TEST_MODELS_DIR

gguf = pytest.importorskip("gguf")

from assistant.errors import ModelIntegrityError  # noqa: E402
from assistant.models.gguf import read_gguf  # noqa: E402

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def build(
    path: Path,
    *,
    arch: str = "llama",
    file_type: int | None = 3,
    template: str | None = TEMPLATE,
    quantized: bool = True,
) -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny test model")
    writer.add_context_length(2048)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    if file_type is not None:
        writer.add_file_type(file_type)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_token_list(["<unk>", "<s>", "</s>", "hello", "world"])
    writer.add_array("tokenizer.ggml.scores", [0.0, 0.0, 0.0, -1.0, -2.0])
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.add_tensor("token_embd.weight", np.zeros((5, 64), dtype=np.float16))
    if quantized:
        # 128 rows of 64 elements in Q4_1: 2 blocks of 20 bytes a row.
        writer.add_tensor("blk.0.attn_q.weight", np.zeros((128, 40), dtype=np.uint8),
                          raw_dtype=gguf.GGMLQuantizationType.Q4_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_reads_the_facts_of_a_built_file(tmp_path: Path) -> None:
    path = build(tmp_path / "m.gguf")
    facts = read_gguf(path)
    assert facts.architecture == "llama"
    assert facts.name == "tiny test model"
    assert facts.context_length == 2048
    assert facts.embedding_length == 64
    assert (facts.block_count, facts.head_count, facts.head_count_kv) == (1, 4, 2)
    assert (facts.key_length, facts.value_length) == (None, None)  # embedding_length / heads
    assert facts.quantization == "Q4_1"
    assert facts.parameters == 64 + 5 * 64 + 128 * 64
    assert facts.tensor_count == 3
    assert facts.chat_template == TEMPLATE
    assert (facts.bos_token_id, facts.eos_token_id) == (1, 2)
    assert facts.size_bytes == path.stat().st_size
    summary = facts.summary()
    assert summary["chat_template"] is True and summary["kind"] == "chat"


def test_file_type_names_follow_llama_cpp(tmp_path: Path) -> None:
    assert read_gguf(build(tmp_path / "a.gguf", file_type=15)).quantization == "Q4_K_M"
    assert read_gguf(build(tmp_path / "b.gguf", file_type=7)).quantization == "Q8_0"


def test_quantization_inferred_from_dominant_tensor_type(tmp_path: Path) -> None:
    assert read_gguf(build(tmp_path / "q.gguf", file_type=None)).quantization == "Q4_1"
    plain = build(tmp_path / "f.gguf", file_type=None, quantized=False)
    assert read_gguf(plain).quantization == "F16"


def test_no_template_and_embedding_architecture(tmp_path: Path) -> None:
    facts = read_gguf(build(tmp_path / "b.gguf", arch="bert", template=None))
    assert facts.chat_template is None
    assert facts.summary()["chat_template"] is False
    assert facts.kind == "embedding"


@pytest.mark.parametrize("content", [b"", b"GGU", b"not a model at all\n" * 10,
                                     b"\x00" * 4096, b"PK\x03\x04" + b"\x00" * 100])
def test_garbage_is_not_gguf(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelIntegrityError, match="GGUF"):
        read_gguf(path)


def test_every_truncation_is_refused(tmp_path: Path) -> None:
    whole = build(tmp_path / "m.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cuts = sorted({*range(0, 400, 7), *range(400, len(whole), 97), len(whole) - 1})
    for n in cuts:
        cut.write_bytes(whole[:n])
        with pytest.raises(ModelIntegrityError):
            read_gguf(cut)


def header(version: int = 3, tensors: int = 0, kvs: int = 1) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def gstr(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (header(version=1) + b"\x00" * 64, "version 1"),
        (header(kvs=2**40) + b"\x00" * 64, "metadata entries"),
        (header(tensors=2**40) + b"\x00" * 64, "tensors"),
        (header() + struct.pack("<Q", 2**62) + b"\x00" * 64, "claims"),
        (header() + gstr(b"general.architecture") + struct.pack("<IQ", 8, 2**50) + b"x" * 64,
         "claims"),
        (header() + gstr(b"k") + struct.pack("<IIQ", 9, 8, 2**40) + b"\x00" * 64,
         "elements"),
        (header() + gstr(b"k") + struct.pack("<I", 99) + b"\x00" * 64, "unknown value type"),
        (header() + gstr(b"\xff\xfe") + struct.pack("<IB", 0, 1) + b"\x00" * 64, "UTF-8"),
        (header(kvs=1) + gstr(b"general.name") + struct.pack("<I", 8) + gstr(b"x") + b"\0" * 64,
         "architecture is missing"),
    ],
)
def test_hostile_headers_are_refused_with_a_reason(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "h.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelIntegrityError, match=message):
        read_gguf(path)


def test_tensor_pointing_past_the_end_is_refused(tmp_path: Path) -> None:
    whole = build(tmp_path / "m.gguf").read_bytes()
    path = tmp_path / "short.gguf"
    path.write_bytes(whole[:-64])
    with pytest.raises(ModelIntegrityError, match="truncated"):
        read_gguf(path)


def test_random_corruption_gives_facts_or_integrity_error(tmp_path: Path) -> None:
    whole = build(tmp_path / "m.gguf").read_bytes()
    rng = random.Random(1234)
    path = tmp_path / "fuzz.gguf"
    for _ in range(300):
        data = bytearray(whole)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(0, 600)] = rng.randrange(256)
        path.write_bytes(bytes(data))
        with contextlib.suppress(ModelIntegrityError):
            read_gguf(path)


def test_the_real_test_model_when_present() -> None:
    path = TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        pytest.fail("smollm2-135m is not pulled (make test-models)")
    facts = read_gguf(path)
    assert (facts.architecture, facts.context_length, facts.quantization) == ("llama", 8192,
                                                                              "Q4_1")
    assert facts.chat_template and facts.parameters > 100_000_000
