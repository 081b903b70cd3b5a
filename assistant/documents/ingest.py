"""Adding files to the document index: read, chunk, embed, store (all or nothing per file).

Whatever reading or splitting one file raises is that file's ``failed`` outcome, never the
batch's: the files beside it are still indexed. A store or embedding model that cannot be used
fails every file alike, so its error is raised, once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.documents.chunking import CHUNKER_VERSION, Chunk, chunk_sections
from assistant.documents.reader import SUFFIXES, DocumentError, read_document

if TYPE_CHECKING:
    from assistant.store.repository import Store

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
EMBED_BATCH = 32


@dataclass(frozen=True)
class Outcome:
    """What happened to one file: ``added``, ``updated`` (it replaced the version stored for
    its path), ``unchanged`` or ``failed`` (with ``message``)."""

    path: Path
    status: str
    chunks: int = 0
    message: str = ""
    document_id: str = ""


def expand(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and the supported files under folders named, sorted; hidden ones skipped."""
    for path in paths:
        try:
            folder = path.is_dir()
        except OSError:  # a name too long…: add_file says what is wrong with it
            folder = False
        if folder:
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path).parts
                if child.is_file() and child.suffix.lower() in SUFFIXES and \
                        not any(p.startswith(".") for p in rel):
                    yield child
        else:
            yield path


def to_blob(vector: list[float]) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float32).tobytes()


async def add_file(
    store: Store, path: Path, embed: Embed,
    progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Index one file. One stored with the same content (hash) by the current chunker
    (:data:`CHUNKER_VERSION`) is left alone; otherwise it is chunked and embedded anew, and
    its new chunks replace the old ones in one transaction."""
    from assistant.store.documents import NewChunk
    from assistant.text import detect_language, sentences
    from assistant.text.language import UNDETERMINED

    try:
        path = path.resolve()
        if not path.exists():
            raise DocumentError(f"{path}: no such file")
        # Reading, parsing and sentence splitting are CPU work: off the event loop.
        document = await asyncio.to_thread(read_document, path)
    except DocumentError as exc:
        return Outcome(path, "failed", message=exc.message)
    except Exception as exc:  # a symlink loop, a name too long, a parser's bug: this file's
        return Outcome(path, "failed",
                       message=f"{path}: cannot be read ({type(exc).__name__}: {exc})")
    repo = store.documents
    known = await asyncio.to_thread(repo.by_path, str(path))
    if known is not None and known.sha256 == document.sha256 and \
            known.chunker_version == CHUNKER_VERSION:
        return Outcome(path, "unchanged", document_id=known.id)

    def split() -> tuple[str, list[Chunk]]:
        lang = detect_language(" ".join(s.text for s in document.sections[:5])[:2000])
        return lang, chunk_sections(document.sections, lambda t: sentences(t, lang))

    try:
        lang, chunks = await asyncio.to_thread(split)
    except Exception as exc:  # text the sentence splitter cannot take fails this file only
        return Outcome(path, "failed",
                       message=f"{path}: cannot be split into passages "
                               f"({type(exc).__name__}: {exc})")
    vectors: list[list[float]] = []
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start:start + EMBED_BATCH]
        vectors += await embed([c.text for c in batch])
        if progress is not None:
            progress(len(vectors), len(chunks))
    info = await asyncio.to_thread(repo.add, str(path), document.title, document.sha256, [
        NewChunk(i, c.location, c.text, to_blob(v))
        for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))], CHUNKER_VERSION,
        language=None if lang == UNDETERMINED else lang)
    return Outcome(path, "added" if known is None else "updated", len(chunks),
                   document_id=info.id)
