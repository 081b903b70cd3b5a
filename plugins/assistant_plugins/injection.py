"""Instructions hidden in a document ("ignore previous instructions and…"): found sentence by
sentence, so that qa can give the model the passage without them, and say so in its citation.

A document is data: the person asking wrote the question, not the page it came from. The
patterns are phrases that address the reader as a model (override its instructions, give it a
new role or a reply to write); a sentence holding one is left out of the passage the model
reads, in place of it ``[instruction left out]``. A false alarm costs one sentence of one
passage, said out loud; a miss costs an answer steered by whoever wrote the document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

LEFT_OUT = "[instruction left out]"

_SENTENCE = re.compile(r"[^.!?。！？\n]*(?:[.!?。！？]+|\n|$)")
_ADDRESSING = re.compile("|".join([
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,40}\b(?:instructions?|"
    r"directions?|prompts?|rules|guidelines|everything|the above|previous|prior)\b",
    r"\byou are now\b", r"\bnew instructions?\b", r"\bsystem prompt\b",
    r"\b(?:from now on|instead)\b[^.!?\n]{0,30}\b(?:reply|respond|answer|say)\b",
    r"\b(?:reply|respond|answer|say|output)\b[^.!?\n]{0,20}\bonly\b[^.!?\n]{0,10}\bwith\b",
    r"\b(?:assistant|AI|language model|chatbot|LLM)\b\s*[,:]\s*(?:you must|please|ignore)",
    r"忽略(?:之前|以上|前面|所有)的?(?:指令|说明|指示|提示)",
    r"\bignorez?\b[^.!?\n]{0,30}\binstructions\b",
    r"\bignorier(?:e|en)?\b[^.!?\n]{0,30}\banweisungen\b",
]), re.I)


def quarantine(text: str) -> tuple[str, list[str]]:
    """``text`` with each sentence that addresses the model replaced by :data:`LEFT_OUT`, and
    the sentences left out."""
    kept, dropped = [], []
    for sentence in _SENTENCE.findall(text):
        if sentence.strip() and _ADDRESSING.search(sentence):
            dropped.append(sentence.strip())
            lead = sentence[:len(sentence) - len(sentence.lstrip())]
            kept.append(lead + LEFT_OUT + ("\n" if sentence.endswith("\n") else ""))
        else:
            kept.append(sentence)
    return ("".join(kept).rstrip() if dropped else text), dropped


def quarantined(passages: Sequence[dict[str, Any]],
                ) -> tuple[list[dict[str, Any]], dict[int, list[str]]]:
    """``passages`` with their instructions left out, and the left-out sentences of each
    (by 1-based number) that had any."""
    out, flagged = [], {}
    for n, passage in enumerate(passages, 1):
        text, dropped = quarantine(str(passage.get("text", "")))
        if dropped:
            flagged[n] = dropped
            passage = {**passage, "text": text}
        out.append(passage)
    return out, flagged
