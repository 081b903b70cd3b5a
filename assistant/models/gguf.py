"""A bounded reader of GGUF headers: what a model file says about itself, without loading it.

The file is untrusted. Every count and length read from it is checked against the bytes that
are left and against fixed caps before anything is allocated, and the tensor data each tensor
info points at must lie inside the file. Anything malformed or truncated raises
:class:`ModelIntegrityError` naming the file and what is wrong. Pure Python, no ``gguf`` package.

Format (little-endian): ``GGUF``, version u32 (2 or 3), tensor count u64, KV count u64; the KV
pairs (key string, value type u32, value); the tensor infos (name, n_dims u32, dims u64…, type
u32, offset u64); padding to ``general.alignment``; the tensor data.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from assistant.errors import ModelIntegrityError

MAGIC = b"GGUF"
_CHUNK = 1 << 20
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 20
MAX_KEY = 1 << 16
MAX_STRING = 16 << 20
MAX_ARRAY = 1 << 28
MAX_DEPTH = 2
MAX_DIMS = 4
# Strings kept in memory (others are skipped over); a chat template is a few KB.
KEEP_STRING = 1 << 20

# GGUF value types: id -> (struct format, size). 8 = string, 9 = array.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9

# ggml tensor types: id -> (name, elements per block, bytes per block).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}

# general.file_type (llama.cpp's llama_ftype) -> the name quantizers use.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}

# Architectures whose GGUF models produce embeddings rather than chat.
EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert", "jina-bert-v2", "t5encoder"})


@dataclass(frozen=True)
class GGUFFacts:
    version: int
    architecture: str
    name: str | None
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    # Attention heads and their key and value widths: what the KV cache's size follows.
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    quantization: str | None
    file_type: int | None
    parameters: int
    tensor_count: int
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    pooling: bool
    size_bytes: int

    @property
    def kind(self) -> str:
        return "embedding" if self.pooling or self.architecture in EMBEDDING_ARCHITECTURES \
            else "chat"

    def summary(self) -> dict[str, Any]:
        """JSON-able facts; ``chat_template`` is reduced to whether there is one."""
        out = asdict(self)
        out["chat_template"] = self.chat_template is not None
        out["format"] = "gguf"
        out["kind"] = self.kind
        return out


class _Cursor:
    """Sequential reads over a file through a window, each checked against the file's end."""

    def __init__(self, fh: IO[bytes], size: int, path: Path) -> None:
        self.fh, self.size, self.path = fh, size, path
        self.pos = 0
        self.buf = b""
        self.buf_start = 0

    def fail(self, what: str) -> ModelIntegrityError:
        return ModelIntegrityError(
            f"{self.path} is not a valid GGUF model: {what} (at byte {self.pos}).",
            "The file may be truncated or damaged; download it again.",
        )

    def left(self) -> int:
        return self.size - self.pos

    def _window(self, n: int) -> int:
        if n > self.left():
            raise self.fail(f"needs {n} more bytes but the file ends")
        offset = self.pos - self.buf_start
        if offset < 0 or offset + n > len(self.buf):
            self.fh.seek(self.pos)
            self.buf = self.fh.read(max(n, _CHUNK))
            self.buf_start = self.pos
            offset = 0
            if len(self.buf) < n:
                raise self.fail("the file ended while being read")
        return offset

    def unpack(self, fmt: str, size: int) -> Any:
        offset = self._window(size)
        self.pos += size
        return struct.unpack_from(fmt, self.buf, offset)[0]

    def u32(self) -> int:
        value: int = self.unpack("<I", 4)
        return value

    def u64(self) -> int:
        value: int = self.unpack("<Q", 8)
        return value

    def raw(self, n: int) -> bytes:
        offset = self._window(n)
        self.pos += n
        return self.buf[offset:offset + n]

    def skip(self, n: int) -> None:
        if n > self.left():
            raise self.fail(f"a value of {n} bytes runs past the end of the file")
        self.pos += n

    def string_length(self, cap: int, what: str) -> int:
        n = self.u64()
        if n > cap:
            raise self.fail(f"{what} claims {n} bytes (limit {cap})")
        if n > self.left():
            raise self.fail(f"{what} of {n} bytes runs past the end of the file")
        return n

    def text(self, cap: int, what: str) -> str:
        data = self.raw(self.string_length(cap, what))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None


def is_gguf(path: Path) -> bool:
    """Whether the file starts with the GGUF magic (cheap; says nothing about validity)."""
    try:
        with path.open("rb") as fh:
            return fh.read(4) == MAGIC
    except OSError:
        return False


def read_gguf(path: Path) -> GGUFFacts:
    """Read and check the header of the GGUF file at ``path``."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(0)
            return _read(_Cursor(fh, size, path))
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read(cur: _Cursor) -> GGUFFacts:
    if cur.size < 24 or cur.raw(4) != MAGIC:
        raise ModelIntegrityError(
            f"{cur.path} is not a GGUF file (it does not start with 'GGUF').",
            "Give the path of a .gguf model file.",
        )
    version = cur.u32()
    if version not in (2, 3):
        raise cur.fail(f"GGUF version {version} is not supported (2 or 3 are)")
    tensor_count = cur.u64()
    kv_count = cur.u64()
    # Each KV takes at least 8 (key length) + 1 (key) + 4 (type) + 1 (value) bytes; each tensor
    # info at least 8 + 1 + 4 + 8 + 4 + 8.
    if kv_count > MAX_KV or kv_count * 14 > cur.left():
        raise cur.fail(f"it claims {kv_count} metadata entries")
    if tensor_count > MAX_TENSORS or tensor_count * 33 > cur.left():
        raise cur.fail(f"it claims {tensor_count} tensors")

    meta: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cur.text(MAX_KEY, "a metadata key")
        if key in meta:
            raise cur.fail(f"metadata key {key!r} appears twice")
        meta[key] = _value(cur, cur.u32(), key, 0)

    alignment = meta.get("general.alignment", 32)
    if not isinstance(alignment, int) or isinstance(alignment, (bool, _ArrayLength)) \
            or alignment < 1 or alignment > 1 << 16 or alignment & (alignment - 1):
        raise cur.fail(f"general.alignment {alignment!r} is not a power of two")

    names: set[str] = set()
    tensors: list[tuple[str, int, int, int]] = []  # name, elements, type, offset
    for _ in range(tensor_count):
        name = cur.text(MAX_KEY, "a tensor name")
        if name in names:
            raise cur.fail(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = cur.u32()
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"tensor {name!r} has {n_dims} dimensions")
        elements = 1
        for _ in range(n_dims):
            dim = cur.u64()
            if dim == 0 or dim > 1 << 40:
                raise cur.fail(f"tensor {name!r} has a dimension of {dim}")
            elements *= dim
        if elements > 1 << 48:
            raise cur.fail(f"tensor {name!r} claims {elements} elements")
        ggml_type = cur.u32()
        offset = cur.u64()
        if offset % alignment:
            raise cur.fail(f"tensor {name!r} is not aligned to {alignment}")
        tensors.append((name, elements, ggml_type, offset))

    data_start = -(-cur.pos // alignment) * alignment
    for name, elements, ggml_type, offset in tensors:
        info = GGML_TYPES.get(ggml_type)
        if info is None:
            raise cur.fail(f"tensor {name!r} has unknown type {ggml_type}")
        _, block, block_bytes = info
        if elements % block:
            raise cur.fail(f"tensor {name!r} does not fill whole {info[0]} blocks")
        end = data_start + offset + elements // block * block_bytes
        if end > cur.size:
            raise ModelIntegrityError(
                f"{cur.path} is truncated: tensor {name!r} needs bytes up to {end} but the "
                f"file has {cur.size}.",
                "Download the model again.",
            )

    return _facts(cur, version, meta, tensors)


def _value(cur: _Cursor, vtype: int, key: str, depth: int) -> Any:
    """Read one value; strings past KEEP_STRING and every array are skipped, not kept."""
    scalar = _SCALARS.get(vtype)
    if scalar is not None:
        return cur.unpack(*scalar)
    if vtype == _STRING:
        n = cur.string_length(MAX_STRING, f"the value of {key!r}")
        if n > KEEP_STRING:
            cur.skip(n)
            return None
        data = cur.raw(n)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise cur.fail(f"the value of {key!r} is not UTF-8") from None
    if vtype == _ARRAY:
        if depth >= MAX_DEPTH:
            raise cur.fail(f"{key!r} nests arrays too deeply")
        etype = cur.u32()
        count = cur.u64()
        elem = _SCALARS.get(etype)
        min_size = elem[1] if elem else 8 if etype == _STRING else 12 if etype == _ARRAY else 0
        if min_size == 0:
            raise cur.fail(f"{key!r} is an array of unknown type {etype}")
        if count > MAX_ARRAY or count * min_size > cur.left():
            raise cur.fail(f"{key!r} claims {count} elements")
        if elem:
            cur.skip(count * elem[1])
        elif etype == _STRING:
            for _ in range(count):
                cur.skip(cur.string_length(MAX_STRING, f"an element of {key!r}"))
        else:
            for _ in range(count):
                _value(cur, _ARRAY, key, depth + 1)
        return _ArrayLength(count)
    raise cur.fail(f"{key!r} has unknown value type {vtype}")


class _ArrayLength(int):
    """Stands for an array value: only its length is kept."""


def _int(meta: dict[str, Any], key: str) -> int | None:
    value = meta.get(key)
    if isinstance(value, int) and not isinstance(value, (bool, _ArrayLength)):
        return value
    return None


def _facts(
    cur: _Cursor, version: int, meta: dict[str, Any], tensors: list[tuple[str, int, int, int]]
) -> GGUFFacts:
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise cur.fail("general.architecture is missing")
    file_type = _int(meta, "general.file_type")
    quantization = FILE_TYPES.get(file_type) if file_type is not None else None
    if quantization is None:
        quantization = _dominant_type(tensors)
    name = meta.get("general.name")
    template = meta.get("tokenizer.chat_template")
    return GGUFFacts(
        version=version,
        architecture=arch,
        name=name if isinstance(name, str) else None,
        context_length=_int(meta, f"{arch}.context_length"),
        embedding_length=_int(meta, f"{arch}.embedding_length"),
        block_count=_int(meta, f"{arch}.block_count"),
        head_count=_int(meta, f"{arch}.attention.head_count"),
        head_count_kv=_int(meta, f"{arch}.attention.head_count_kv"),
        key_length=_int(meta, f"{arch}.attention.key_length"),
        value_length=_int(meta, f"{arch}.attention.value_length"),
        quantization=quantization,
        file_type=file_type,
        parameters=sum(t[1] for t in tensors),
        tensor_count=len(tensors),
        chat_template=template if isinstance(template, str) and template else None,
        bos_token_id=_int(meta, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_int(meta, "tokenizer.ggml.eos_token_id"),
        pooling=f"{arch}.pooling_type" in meta,
        size_bytes=cur.size,
    )


def _dominant_type(tensors: list[tuple[str, int, int, int]]) -> str | None:
    """The tensor type holding most elements, leaving out F32 (norms, biases) unless alone."""
    weights: Counter[int] = Counter()
    for _, elements, ggml_type, _ in tensors:
        weights[ggml_type] += elements
    if len(weights) > 1:
        weights.pop(0, None)
    if not weights:
        return None
    return GGML_TYPES[weights.most_common(1)[0][0]][0]
