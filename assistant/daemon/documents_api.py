"""The user's documents for the qa skill over HTTP: ``/api/documents``.

``POST /api/documents`` with ``{"paths": [...]}`` (absolute paths of files or folders, as the
user's own programs see them; the daemon runs as the same user) answers a stream of
server-sent events (:data:`assistant.wire.IngestEvent`), so a client can show ingestion as it
goes:

- ``progress``: ``done``, ``total`` (chunks embedded of the current file), ``message``;
- ``document``: one per file, ``path``, ``status`` (``added`` / ``updated`` / ``unchanged`` /
  ``failed``), ``chunks``, ``message``, ``document_id``;
- ``done``: ``added``, ``updated``, ``unchanged``, ``failed`` counts;
- ``error``: ``code`` (``ingestion_failed``), ``message``, when it stopped half way.

Each file is stored whole or not at all. ``GET /api/documents`` lists the index;
``DELETE /api/documents/{id}`` removes a document and its chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from assistant.daemon import deps
from assistant.daemon.events import while_running
from assistant.daemon.model_manager import ModelManager
from assistant.daemon.sse import encode
from assistant.errors import AssistantError, RequestError, StorageUnavailable
from assistant.store import Store
from assistant.wire import Document, Error, IngestDone, Progress

router = APIRouter(prefix="/api", tags=["documents"])


class DocumentsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(min_length=1, max_length=1000)


def _store(services: deps.ServicesDep, owner: deps.OwnerDep) -> Store:
    """The store as the request's owner sees it: their documents only."""
    if services.store is None:
        raise StorageUnavailable("the document index is unavailable; see `assistant daemon status`")
    return services.store.owned_by(owner)


IndexDep = Annotated[Store, Depends(_store)]


@router.get("/documents")
async def list_documents(store: IndexDep) -> Any:
    rows = await run_in_threadpool(lambda: store.documents.all())
    return {"documents": [
        {"id": d.id, "path": d.path, "title": d.title, "chunks": d.chunks,
         "sha256": d.sha256, "added": d.added.isoformat()} for d in rows]}


@router.delete("/documents/{document_id}", status_code=204)
async def remove_document(store: IndexDep, document_id: str) -> Response:
    def remove() -> list[Any]:
        documents = store.documents
        if not any(d.id == document_id for d in documents.all()):
            return []  # an exact id only: the CLI's prefixes and paths are not for the API
        return list(documents.remove(document_id))

    if not await run_in_threadpool(remove):
        raise RequestError(f"No document with id {document_id}.", status=404,
                           code="not_found", param="id")
    return Response(status_code=204)


@router.post("/documents")
async def add_documents(body: DocumentsBody, local: deps.LocalPeerDep,
                        services: deps.ServicesDep, owner: deps.OwnerDep) -> Response:
    if not local:
        raise RequestError(
            "documents are added from this machine's user only: use the Unix socket "
            "(`assistant docs add`, the terminal UI)", status=403, code="local_only")
    store = _store(services, owner)
    paths = [_absolute(p) for p in body.paths]
    await deps.started(services)  # the plugins' embedding backends are in place
    embedding = services.settings.models.embedding
    return StreamingResponse(_ingest(services.models, embedding, store, paths),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _absolute(raw: str) -> Path:
    if "\0" in raw:
        raise RequestError("paths: a path contains a NUL byte", param="paths")
    path = Path(raw)
    if not path.is_absolute():
        raise RequestError(f"paths: {raw!r} is relative; the daemon needs absolute paths "
                           "(clients resolve them against their own directory)", param="paths")
    return path


async def _ingest(models: ModelManager, embedding: str, store: Store,
                  paths: list[Path]) -> AsyncIterator[bytes]:
    from assistant.documents.ingest import Outcome, add_file, expand

    queue: asyncio.Queue[Progress | Document] = asyncio.Queue()
    counts = {"added": 0, "updated": 0, "unchanged": 0, "failed": 0}

    async def embed(texts: list[str]) -> list[list[float]]:
        return await models.embed(embedding, texts)

    async def run() -> None:
        files = await asyncio.to_thread(lambda: list(expand(paths)))
        for number, path in enumerate(files, 1):
            def progress(done: int, total: int, name: str = path.name,
                         number: int = number) -> None:
                queue.put_nowait(Progress(type="progress", done=done, total=total,
                                          message=f"{name} ({number}/{len(files)})"))

            try:
                outcome = await add_file(store, path, embed, progress)
            except AssistantError as exc:  # the embedder or the store failed: say, go on
                outcome = Outcome(path, "failed", message=exc.message)
            counts[outcome.status] += 1
            queue.put_nowait(Document(type="document", path=str(outcome.path),
                                      status=outcome.status, chunks=outcome.chunks,
                                      message=outcome.message,
                                      document_id=outcome.document_id))
        if not files:
            queue.put_nowait(Document(type="document", path=" ".join(map(str, paths)),
                                      status="failed", chunks=0, document_id="",
                                      message="no supported files there (.txt, .md, .html, .pdf)"))
            counts["failed"] += 1

    try:
        async for event in while_running(asyncio.create_task(run()), queue):
            yield encode(event)
    except Exception as exc:  # the stream has begun: end it with an error event
        yield encode(Error(type="error", code="ingestion_failed", message=str(exc)))
        return
    yield encode(IngestDone(type="done", added=counts["added"], updated=counts["updated"],
                            unchanged=counts["unchanged"], failed=counts["failed"]))

