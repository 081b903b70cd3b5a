"""Evaluation items from files: JSON Lines (the format users supply), and the shapes of the
public sets we measure on: Tatoeba TSV pairs and SQuAD v1.1 JSON.

translate: ``{"source", "reference", "target", "source_lang"?}``; summarize: ``{"document",
"summary", "lang"?}``; qa: ``{"question", "answers": [...], "context"?}`` (no answers: the
documents do not hold one, and the skill should decline); routing: ``{"text", "skill"}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError

_TATOEBA = {"eng": "en", "cmn_Hans": "zh", "cmn": "zh", "fra": "fr", "deu": "de", "spa": "es",
            "jpn": "ja", "ita": "it", "por": "pt", "rus": "ru"}


class EvalDataError(AssistantError):
    """An evaluation file that cannot be read."""


def load_items(path: Path, every: int = 1, limit: int | None = None) -> list[dict[str, Any]]:
    """Items of ``path`` (.jsonl, Tatoeba .tsv, SQuAD .json): every ``every``-th, at most
    ``limit``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{path}: cannot be read ({exc})") from None
    if path.suffix == ".tsv":
        items = [_tatoeba(line) for line in text.splitlines() if line.strip()]
    elif path.suffix == ".json":
        items = _squad(json.loads(text))
    else:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise EvalDataError(f"{path}, line {n}: not JSON ({exc.msg})") from None
    items = items[::every]
    return items[:limit] if limit else items


def _tatoeba(line: str) -> dict[str, Any]:
    src, tgt, source, reference = line.split("\t")[:4]
    return {"source": source, "reference": reference, "source_lang": _TATOEBA.get(src, src),
            "target": _TATOEBA.get(tgt, tgt)}


def _squad(data: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                items.append({"question": qa["question"], "context": paragraph["context"],
                              "answers": [a["text"] for a in qa["answers"]]})
    return items
