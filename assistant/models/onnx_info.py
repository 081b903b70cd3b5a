"""What an ONNX model says about itself: inputs, outputs, embedding dimension, size of weights.

:func:`read_onnx` walks the protobuf (``ModelProto``) in pure Python with every length checked
against the bytes that are left, skipping weight data without reading it, so a hostile file
can only earn a :class:`ModelIntegrityError`. :func:`check_loadable` goes further and asks
onnxruntime to build a session, in a child process: a file that crashes the runtime kills the
child, never the CLI, and the CLI never imports onnxruntime.

Weights may live in external data files named by the model (``TensorProto.external_data``).
Each one must be a regular file inside the model's folder once symlinks are resolved: a
location like ``../../etc/passwd``, an absolute path or a symlink out of the folder would have
the runtime read any file the user can read into the model's outputs. :func:`read_onnx`
refuses such a file wherever the tensor sits (initializers, sparse initializers, node
attributes, subgraphs, functions), so ``models add`` and every load refuse it.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import ModelIntegrityError

MAX_DEPTH = 12
MAX_FIELDS = 1 << 22
# TensorProto.DataType -> short name.
DATA_TYPES = {
    1: "f32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    9: "bool", 10: "f16", 11: "f64", 12: "uint32", 13: "uint64", 16: "bf16",
}

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@dataclass(frozen=True)
class TensorSpec:
    name: str
    elem_type: str | None
    shape: tuple[int | str | None, ...] | None


@dataclass(frozen=True)
class ONNXFacts:
    ir_version: int
    opset: int | None
    producer: str | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: int
    quantization: str | None
    size_bytes: int
    embedding_dimension: int | None = field(default=None)
    # Rows of a position-embedding table, when the model has one: the longest input it takes.
    max_positions: int | None = field(default=None)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["inputs"] = [t.name for t in self.inputs]
        out["outputs"] = [
            {"name": t.name, "type": t.elem_type, "shape": list(t.shape or ())}
            for t in self.outputs
        ]
        out["format"] = "onnx"
        out["kind"] = "embedding"
        out["architecture"] = "onnx"
        out["chat_template"] = False
        out["context_length"] = self.max_positions or _max_sequence(self)
        return out


class _Bad(Exception):
    pass


def _fields(buf: mmap.mmap | bytes, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; LEN values are (start, end) spans."""
    pos = start
    count = 0
    while pos < end:
        count += 1
        if count > MAX_FIELDS:
            raise _Bad("too many fields")
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Bad("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise _Bad(f"a field of {length} bytes runs past its end")
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if size > end - pos:
                raise _Bad("a fixed-size field runs past its end")
            yield number, wire, bytes(buf[pos:pos + size])
            pos += size
        else:
            raise _Bad(f"wire type {wire}")


def _varint(buf: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Bad("a broken varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _text(buf: mmap.mmap | bytes, span: tuple[int, int]) -> str:
    if span[1] - span[0] > 1 << 16:
        raise _Bad("a name longer than 64 KiB")
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError:
        raise _Bad("a name that is not UTF-8") from None


def _expect_len(wire: int, what: str) -> None:
    if wire != _LEN:
        raise _Bad(f"{what} has the wrong wire type")


def read_onnx(path: Path) -> ONNXFacts:
    """Check that ``path`` is an ONNX ModelProto and return what it declares."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            if size < 8:
                raise _Bad("the file is too small")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _model(buf, size, path)
    except _Bad as exc:
        raise ModelIntegrityError(
            f"{path} is not a valid ONNX model: {exc}.",
            "Give the path of an .onnx model file; it may be truncated or damaged.",
        ) from None
    except _Outside as exc:
        raise ModelIntegrityError(
            f"{path} is refused: {exc}.",
            "An ONNX model may keep its weights only in files inside its own folder "
            "(no '..', absolute paths or symlinks leading out of it).",
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"cannot read {path}: {exc}") from None


def _model(buf: mmap.mmap, size: int, path: Path) -> ONNXFacts:
    ir_version: int | None = None
    opset: int | None = None
    producer: str | None = None
    graph: tuple[int, int] | None = None
    for number, wire, value in _fields(buf, 0, size):
        if number == 1:
            if wire != _VARINT:
                raise _Bad("ir_version has the wrong wire type")
            ir_version = value
        elif number == 2:
            _expect_len(wire, "producer_name")
            producer = _text(buf, value)
        elif number == 7:
            _expect_len(wire, "graph")
            graph = value
        elif number == 8:
            _expect_len(wire, "opset_import")
            domain, version = "", None
            for n, w, v in _fields(buf, *value):
                if n == 1 and w == _LEN:
                    domain = _text(buf, v)
                elif n == 2 and w == _VARINT:
                    version = v
            if domain in ("", "ai.onnx"):
                opset = version
    if ir_version is None or not 1 <= ir_version <= 100:
        raise _Bad("no ir_version")
    if graph is None:
        raise _Bad("no graph")
    for tensor, entries in _external_tensors(buf, (0, size), _MODEL, 0):
        _check_external(path, tensor, entries)
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    initializers: set[str] = set()
    weights: Counter[int] = Counter()
    positions: int | None = None
    for number, wire, value in _fields(buf, *graph):
        if number in (11, 12):
            _expect_len(wire, "a graph input or output")
            (inputs if number == 11 else outputs).append(_value_info(buf, value))
        elif number == 5:
            _expect_len(wire, "an initializer")
            name, dtype, dims = _initializer(buf, value)
            initializers.add(name)
            weights[dtype] += math.prod(dims)
            if "position_embeddings" in name and len(dims) == 2:
                positions = dims[0]
    if not outputs:
        raise _Bad("the graph has no outputs")
    # Older exporters list initializers among the inputs too; those are not model inputs.
    real_inputs = tuple(t for t in inputs if t.name not in initializers)
    return ONNXFacts(
        ir_version=ir_version,
        opset=opset,
        producer=producer,
        inputs=real_inputs,
        outputs=tuple(outputs),
        parameters=sum(weights.values()),
        quantization=_dominant(weights),
        size_bytes=size,
        embedding_dimension=_embedding_dimension(outputs),
        max_positions=positions,
    )


def _value_info(buf: mmap.mmap, span: tuple[int, int]) -> TensorSpec:
    name = ""
    elem_type: str | None = None
    shape: tuple[int | str | None, ...] | None = None
    for number, wire, value in _fields(buf, *span):
        if number == 1 and wire == _LEN:
            name = _text(buf, value)
        elif number == 2 and wire == _LEN:
            for n, w, v in _fields(buf, *value):  # TypeProto
                if n == 1 and w == _LEN:  # tensor_type
                    elem_type, shape = _tensor_type(buf, v)
    return TensorSpec(name, elem_type, shape)


def _tensor_type(
    buf: mmap.mmap, span: tuple[int, int]
) -> tuple[str | None, tuple[int | str | None, ...] | None]:
    elem: str | None = None
    dims: list[int | str | None] | None = None
    for number, wire, value in _fields(buf, *span):
        if number == 1 and wire == _VARINT:
            elem = DATA_TYPES.get(value, str(value))
        elif number == 2 and wire == _LEN:
            dims = []
            for n, w, v in _fields(buf, *value):  # TensorShapeProto.dim
                if n != 1 or w != _LEN:
                    continue
                dim: int | str | None = None
                for dn, dw, dv in _fields(buf, *v):
                    if dn == 1 and dw == _VARINT:
                        dim = dv
                    elif dn == 2 and dw == _LEN:
                        dim = _text(buf, dv)
                dims.append(dim)
    return elem, None if dims is None else tuple(dims)


def _initializer(buf: mmap.mmap, span: tuple[int, int]) -> tuple[str, int, list[int]]:
    """(name, data type, dims) of a TensorProto, its data skipped."""
    name, dtype, elements, dims = "", 0, 1, []
    for number, wire, value in _fields(buf, *span):
        if number == 1:
            if wire == _VARINT:
                dims.append(value)
                elements *= value
            elif wire == _LEN:  # packed
                pos, end = value
                while pos < end:
                    dim, pos = _varint(buf, pos, end)
                    dims.append(dim)
                    elements *= dim
        elif number == 2 and wire == _VARINT:
            dtype = value
        elif number == 8 and wire == _LEN:
            name = _text(buf, value)
        if elements > 1 << 48:
            raise _Bad("an initializer claims too many elements")
    return name, dtype, dims


# -- external data -------------------------------------------------------------------------

class _Outside(Exception):
    pass


# Where a TensorProto can hide, by message type: field number -> the type of that field.
# (ModelProto, GraphProto, NodeProto, AttributeProto, SparseTensorProto, FunctionProto,
# TrainingInfoProto; TensorProto itself is the leaf.)
_MODEL, _GRAPH, _NODE, _ATTRIBUTE, _SPARSE, _FUNCTION, _TRAINING, _TENSOR = range(8)
_CHILDREN: dict[int, dict[int, int]] = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTRIBUTE},
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _FUNCTION: {7: _NODE},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
}


def _external_tensors(
    buf: mmap.mmap, span: tuple[int, int], kind: int, depth: int
) -> Iterator[tuple[str, dict[str, str]]]:
    """(tensor name, external_data entries) of every tensor under ``span`` that declares any."""
    if depth > MAX_DEPTH:
        raise _Bad("tensors nested too deeply")
    if kind == _TENSOR:
        name, entries = "", {}
        for number, wire, value in _fields(buf, *span):
            if number == 8 and wire == _LEN:
                name = _text(buf, value)
            elif number == 13 and wire == _LEN:  # StringStringEntryProto
                key = text = ""
                for n, w, v in _fields(buf, *value):
                    if n == 1 and w == _LEN:
                        key = _text(buf, v)
                    elif n == 2 and w == _LEN:
                        text = _text(buf, v)
                entries[key] = text
            elif number == 14 and wire == _VARINT and value == 1:  # data_location EXTERNAL
                entries.setdefault("location", "")
        if entries:
            yield name, entries
        return
    children = _CHILDREN[kind]
    for number, wire, value in _fields(buf, *span):
        child = children.get(number)
        if child is not None and wire == _LEN:
            yield from _external_tensors(buf, value, child, depth + 1)


def _check_external(path: Path, tensor: str, entries: dict[str, str]) -> None:
    """The external file must be a regular file inside the model's folder, symlinks resolved
    (as onnxruntime resolves them, relative to the folder of the path it is given)."""
    location = entries.get("location", "")
    what = f"its tensor {tensor!r} keeps its data in {location!r}"
    if not location or "\x00" in location:
        raise _Outside(f"its tensor {tensor!r} declares external data without a usable location")
    if os.path.isabs(location):
        raise _Outside(f"{what}, an absolute path outside the model's folder")
    folder = os.path.realpath(path.absolute().parent)
    target = os.path.realpath(os.path.join(folder, location))
    if os.path.commonpath([folder, target]) != folder or target == folder:
        raise _Outside(f"{what}, outside the model's folder")
    try:
        info = os.stat(target)
    except OSError:
        raise _Outside(f"{what}, which does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise _Outside(f"{what}, which is not a regular file")
    for key in ("offset", "length"):
        text = entries.get(key, "0")
        if not text.isdigit() or int(text) > info.st_size:
            raise _Outside(f"{what} at {key} {text!r}, past the end of that file")


def _dominant(weights: Counter[int]) -> str | None:
    if not weights:
        return None
    dtype = weights.most_common(1)[0][0]
    return DATA_TYPES.get(dtype, str(dtype))


def _embedding_dimension(outputs: list[TensorSpec]) -> int | None:
    """The last dimension of the first output whose last dimension is a number."""
    preferred = sorted(outputs, key=lambda t: t.name not in (
        "sentence_embedding", "last_hidden_state", "embeddings"))
    for spec in preferred:
        if spec.shape and isinstance(spec.shape[-1], int) and spec.shape[-1] > 0:
            return spec.shape[-1]
    return None


def _max_sequence(facts: ONNXFacts) -> int | None:
    """A fixed sequence length, when the inputs declare one (most take any length)."""
    for spec in facts.inputs:
        if spec.shape and len(spec.shape) == 2 and isinstance(spec.shape[1], int):
            return spec.shape[1]
    return None


_CHECK = """
import json, sys
import onnxruntime as ort
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
print(json.dumps({
    "inputs": [i.name for i in s.get_inputs()],
    "outputs": [{"name": o.name, "shape": [d if isinstance(d, int) else None for d in o.shape]}
                for o in s.get_outputs()],
}))
"""


def check_loadable(path: Path, timeout: float = 120.0) -> dict[str, Any]:
    """Build an onnxruntime session for ``path`` in a child process; return its in/outputs."""
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _CHECK, str(path)], capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
    except subprocess.TimeoutExpired:
        raise ModelIntegrityError(
            f"onnxruntime did not load {path} within {timeout:.0f} s."
        ) from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [""])[-1]
        if proc.returncode < 0:
            why = f"it crashed the runtime (signal {-proc.returncode})"
        raise ModelIntegrityError(f"onnxruntime cannot load {path}: {why}")
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ModelIntegrityError(f"onnxruntime gave no answer about {path}") from None
    return result
