"""GGUF files built inside the tests: hostile chat templates on a real model, and broken headers."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFWriter

from tests.conftest import TEST_MODELS_DIR

SMOLLM = TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE_KEY = "tokenizer.chat_template"


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def with_template(dst: Path, template: str, src: Path = SMOLLM) -> Path:
    """A copy of ``src`` (a real, loadable model) whose chat template is ``template``.

    Only the header is rewritten: the template's key-value pair is replaced, the tensor infos
    follow unchanged, and the tensor data is copied after re-padding to the alignment (tensor
    offsets are relative to the data section, so they stay valid).
    """
    start, end, infos_end, data_offset, alignment = _layout(src)
    with open(src, "rb") as fh:
        head = fh.read(infos_end)
        kv = _string(TEMPLATE_KEY.encode()) + struct.pack("<I", 8) + _string(template.encode())
        header = head[:start] + kv + head[end:infos_end]
        header += b"\0" * (-len(header) % alignment)
        with open(dst, "wb") as out:
            out.write(header)
            fh.seek(data_offset)
            shutil.copyfileobj(fh, out, 1 << 22)
    return dst


@lru_cache(maxsize=4)
def _layout(src: Path) -> tuple[int, int, int, int, int]:
    """Where the template pair, the tensor infos and the data are (GGUFReader is slow: once)."""
    reader = GGUFReader(src)
    field = reader.fields[TEMPLATE_KEY]
    end = field.offset + sum(p.nbytes for p in field.parts)
    infos_end = max(t.field.offset + sum(p.nbytes for p in t.field.parts) for t in reader.tensors)
    return field.offset, end, infos_end, reader.data_offset, reader.alignment


def tiny(dst: Path) -> Path:
    """A small, well-formed GGUF (one F32 tensor) for the corruption tests."""
    writer = GGUFWriter(str(dst), "llama")
    writer.add_name("tiny")
    writer.add_string(TEMPLATE_KEY, "{{ messages }}")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    writer.add_tensor("token_embd.weight", np.zeros((8, 16), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


def models_add(env: dict[str, str], path: Path, name: str) -> subprocess.CompletedProcess[str]:
    """``assistant models add PATH --name NAME`` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "assistant", "models", "add", str(path),
                           "--name", name], env=env, capture_output=True, text=True,
                          timeout=120)


def corruptions(valid: Path) -> dict[str, bytes]:
    """Broken variants of the well-formed ``valid`` file, by what is wrong with them."""
    raw = valid.read_bytes()
    reader = GGUFReader(valid)
    template = reader.fields[TEMPLATE_KEY]
    tokens = reader.fields["tokenizer.ggml.tokens"]
    tensor = reader.tensors[0].field
    string_len_at = template.offset + sum(p.nbytes for p in template.parts[:3])
    array_len_at = tokens.offset + sum(p.nbytes for p in tokens.parts[:4])
    tensor_offset_at = tensor.offset + sum(p.nbytes for p in tensor.parts[:-1])

    def put(at: int, value: bytes) -> bytes:
        return raw[:at] + value + raw[at + len(value):]

    return {
        "truncated header": raw[: len(raw) // 5],
        "truncated data": raw[:-16],
        "flipped magic": put(0, b"GGU\xc6"),
        "flipped version": put(4, b"\xff\xff\xff\x7f"),
        "huge kv count": put(16, struct.pack("<Q", 1 << 62)),
        "huge tensor count": put(8, struct.pack("<Q", 1 << 62)),
        "huge string length": put(string_len_at, struct.pack("<Q", 1 << 62)),
        "huge array length": put(array_len_at, struct.pack("<Q", 1 << 60)),
        "tensor offset past the end": put(tensor_offset_at, struct.pack("<Q", 1 << 40)),
        "empty": b"",
    }
