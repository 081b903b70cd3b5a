"""Sentence-aware chunks: whole sentences, a paragraph boundary preferred, a size the embedding
model reads in full (MiniLM truncates at 256 word pieces, about 180 English words)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from assistant.documents.reader import Section

# Stored with each document. Bump it whenever a change here (MAX_CHARS, MIN_CHARS, how sections
# are joined or cut) changes the chunks of some text: a document stored with another version is
# chunked and embedded again the next time it is added, even though its file is unchanged.
# 0 is "chunked before documents recorded a version".
CHUNKER_VERSION = 2  # 2: a location names the Markdown section it is in

MAX_CHARS = 900
# Only a section shorter than this (a heading, a label) joins the next one. A paragraph of its
# own stays a chunk: three short facts merged into one chunk dilute its embedding until none
# of them is found ("Where is the office?" missed "Our office is at 12 Baker Street.").
MIN_CHARS = 60


@dataclass(frozen=True)
class Chunk:
    location: str
    text: str


def chunk_sections(
    sections: list[Section], split: Callable[[str], list[str]],
    max_chars: int = MAX_CHARS, min_chars: int = MIN_CHARS,
) -> list[Chunk]:
    """Chunks of ``sections`` in order. A section that fits is one chunk (one shorter than
    ``min_chars``, such as a heading, is joined to the next); a longer one is cut between
    sentences (``split``)."""
    chunks: list[Chunk] = []
    for section in sections:
        text = section.text.strip()
        if not text:
            continue
        if len(text) <= max_chars:
            last = chunks[-1] if chunks else None
            if last is not None and len(last.text) < min_chars and \
                    len(last.text) + len(text) < max_chars:
                chunks[-1] = Chunk(last.location, last.text + "\n\n" + text)
            else:
                chunks.append(Chunk(section.location, text))
            continue
        current = ""
        for sentence in split(text) or [text]:
            while len(sentence) > max_chars:  # a "sentence" with no stop: cut at a space
                cut = sentence.rfind(" ", 0, max_chars)
                cut = cut if cut > max_chars // 2 else max_chars
                if current:
                    chunks.append(Chunk(section.location, current))
                    current = ""
                chunks.append(Chunk(section.location, sentence[:cut].strip()))
                sentence = sentence[cut:].strip()
            if current and len(current) + 1 + len(sentence) > max_chars:
                chunks.append(Chunk(section.location, current))
                current = ""
            current = f"{current} {sentence}".strip()
        if current:
            chunks.append(Chunk(section.location, current))
    return chunks
