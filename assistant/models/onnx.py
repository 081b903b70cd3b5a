"""A sentence-embedding ONNX model (MiniLM-style): tokenize, run, mean-pool, L2-normalise.

Texts run ``batch`` at a time, shortest first (less padding), so that what one call allocates
is bounded by the batch, never by how many texts it was given: onnxruntime keeps every layer's
attention maps for the whole batch (10 MiB or more per 256-token text for MiniLM-L6, see
:data:`assistant.models.footprint.EMBED_BYTES_PER_TEXT`). :meth:`OnnxEmbedder.chunks` yields
after each batch, so the model host can stop a job or run another's batch in between.

Imports onnxruntime, so it runs in the model host (or a process that accepts that cost).
The file is checked again by the bounded reader before onnxruntime opens it: it may have
changed since it was registered, and an external data file may have become a symlink out of
its folder (older onnxruntime releases follow such paths without a check of their own).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from assistant.models.onnx_info import read_onnx

MAX_TOKENS = 256
BATCH = 8  # texts per session.run; the host is given models' own (embeddings.batch)


class OnnxEmbedder:
    def __init__(self, path: str, tokenizer: str, *, n_threads: int) -> None:
        read_onnx(Path(path))  # raises ModelIntegrityError, saying why
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(tokenizer)
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()  # each batch is padded to its own longest text (_run)

    def info(self) -> dict[str, Any]:
        return {"inputs": sorted(self.input_names), "dimensions": len(self.embed(["x"])[0])}

    def embed(self, texts: list[str], batch: int = BATCH) -> list[list[float]]:
        vectors: list[list[float]] = []
        for done in self.chunks(texts, batch):
            vectors = done
        return vectors

    def chunks(self, texts: list[str], batch: int = BATCH,
               options: Any = None) -> Iterator[list[list[float]]]:
        """Embed ``texts`` ``batch`` at a time, yielding after each batch; the last value
        yielded is every vector, in the order of ``texts`` (earlier ones are partial).
        ``options`` (an ``onnxruntime.RunOptions``) is each batch's: setting its ``terminate``
        from another thread stops the batch being computed."""
        if not texts:
            yield []
            return
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), max(1, batch)):
            part = order[start:start + max(1, batch)]
            for i, vector in zip(part, self._run([encodings[i] for i in part], options),
                                 strict=True):
                vectors[i] = vector
            yield vectors

    def _run(self, encodings: list[Any], options: Any = None) -> list[list[float]]:
        width = max(len(e.ids) for e in encodings)  # padded to the longest of this batch only
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, :len(e.ids)] = e.ids
            mask[row, :len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds, options)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: list[list[float]] = (pooled / np.clip(norms, 1e-12, None)).tolist()
        return result
