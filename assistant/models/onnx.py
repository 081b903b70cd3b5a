"""A sentence-embedding ONNX model (MiniLM-style): tokenize, run, mean-pool, L2-normalise.

Imports onnxruntime, so it runs in the model host (or a process that accepts that cost).
The file is checked again by the bounded reader before onnxruntime opens it: it may have
changed since it was registered, and an external data file may have become a symlink out of
its folder (older onnxruntime releases follow such paths without a check of their own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from assistant.models.onnx_info import read_onnx

MAX_TOKENS = 256


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
        self.tokenizer.enable_padding()

    def info(self) -> dict[str, Any]:
        return {"inputs": sorted(self.input_names), "dimensions": len(self.embed(["x"])[0])}

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: list[list[float]] = (pooled / np.clip(norms, 1e-12, None)).tolist()
        return vectors
