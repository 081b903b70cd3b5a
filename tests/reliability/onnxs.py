"""ONNX files built inside the tests, with weights kept in external data files.

The ``onnx`` package is not a dependency, so the ``ModelProto`` is written here field by field
(the protobuf wire format is small: varints and length-prefixed fields). The model is an
embedder in the shape MiniLM has: ``input_ids`` and ``attention_mask`` in, a
``last_hidden_state`` out, made by a ``Gather`` of the ids from one initializer, ``table``,
whose float32 rows live in an external data file named by ``location``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

ROWS, DIM = 8, 4
FLOAT, INT64 = 1, 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def _value_info(name: str, elem_type: int, dims: list[int | str]) -> bytes:
    shape = b"".join(
        _bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    tensor_type = _int(1, elem_type) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _external_table(location: str, length: int) -> bytes:
    """A TensorProto whose data is ``length`` bytes at the start of ``location``."""
    entries = [("location", location), ("offset", "0"), ("length", str(length))]
    return (_int(1, ROWS) + _int(1, DIM) + _int(2, FLOAT) + _bytes(8, "table")
            + b"".join(_bytes(13, _bytes(1, k) + _bytes(2, v)) for k, v in entries)
            + _int(14, 1))  # data_location = EXTERNAL


def model_bytes(location: str, length: int = ROWS * DIM * 4) -> bytes:
    """A ModelProto whose one initializer is read from ``location`` (as written, unchecked)."""
    node = (_bytes(1, "table") + _bytes(1, "input_ids") + _bytes(2, "gathered")
            + _bytes(4, "Gather"))
    cast = (_bytes(1, "attention_mask") + _bytes(2, "unused") + _bytes(4, "Identity"))
    out = _bytes(1, "gathered") + _bytes(2, "last_hidden_state") + _bytes(4, "Identity")
    graph = (_bytes(1, node) + _bytes(1, cast) + _bytes(1, out) + _bytes(2, "embedder")
             + _bytes(5, _external_table(location, length))
             + _bytes(11, _value_info("input_ids", INT64, ["batch", "sequence"]))
             + _bytes(11, _value_info("attention_mask", INT64, ["batch", "sequence"]))
             + _bytes(12, _value_info("last_hidden_state", FLOAT, ["batch", "sequence", DIM])))
    opset = _bytes(1, "") + _int(2, 17)
    return _int(1, 8) + _bytes(2, "tests") + _bytes(7, graph) + _bytes(8, opset)


def weights() -> bytes:
    """The table a well-formed model's external file holds: row i is all i+1."""
    table = np.repeat(np.arange(1, ROWS + 1, dtype=np.float32)[:, None], DIM, axis=1)
    return table.tobytes()


def tokenizer(path: Path) -> Path:
    """A word-level tokenizer.json whose vocabulary fits the table's rows."""
    vocab = {"[UNK]": 0, "[PAD]": 1, "hello": 2, "world": 3}
    path.write_text(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }))
    return path


def embedder(folder: Path, location: str = "weights.bin", *, write_weights: bool = True,
             name: str = "model.onnx") -> Path:
    """``folder/name`` with its external data at ``location``, and a tokenizer beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    if write_weights:
        (folder / "weights.bin").write_bytes(weights())
    tokenizer(folder / "tokenizer.json")
    path = folder / name
    path.write_bytes(model_bytes(location))
    return path


def unpack_rows(vector: list[float]) -> bytes:
    """The bytes behind an embedding's floats (before normalisation they are file bytes)."""
    return struct.pack(f"<{len(vector)}f", *vector)
