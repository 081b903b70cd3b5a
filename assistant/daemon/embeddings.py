"""Clients' embedding jobs (``/v1/embeddings``): what one may carry, and their queue per model.

A job past one of ``[embeddings]``'s limits is a 400 naming ``input`` and the limit. One job
runs at a time per model, ``embeddings.queue`` wait, more get 503 with Retry-After. The
daemon's own embedding (routing a turn, document search and ingestion) calls the model manager
directly and is never refused: the host runs every embed job a batch at a time, in turn, so it
waits for one batch of a client's job at most. A job whose caller stops waiting (its client
left) is cancelled in the host before its next batch.
"""

from __future__ import annotations

from assistant.config import EmbeddingsSettings
from assistant.daemon.queue import ModelQueue
from assistant.errors import RequestError
from assistant.models.backend import Backend


class EmbeddingJobs:
    """Clients' embedding jobs, queued per model in front of ``models`` (the model manager)."""

    def __init__(self, models: Backend, settings: EmbeddingsSettings) -> None:
        self.models = models
        self.settings = settings
        self.queues: dict[str, ModelQueue] = {}

    async def run(self, model: str, texts: list[str]) -> list[list[float]]:
        """A client's embedding job: in ``model``'s embedding queue (:class:`QueueFull` past
        ``embeddings.queue`` waiting); cancelling the caller cancels the job in the host."""
        queue = self.queues.setdefault(model, ModelQueue(model, 1, self.settings.queue))
        async with queue.slot():
            return await self.models.embed(model, texts)


def check_embedding_input(texts: list[str], limits: EmbeddingsSettings) -> None:
    """A 400 naming ``input`` and the limit when ``texts`` pass one of ``[embeddings]``."""
    hint = "split the input over several requests"
    if len(texts) > limits.max_inputs:
        raise RequestError(
            f"input: {len(texts)} texts, more than the {limits.max_inputs} a request may carry "
            f"(embeddings.max_inputs); {hint}", param="input")
    longest = max(range(len(texts)), key=lambda i: len(texts[i]))
    if len(texts[longest]) > limits.max_input_chars:
        raise RequestError(
            f"input[{longest}]: {len(texts[longest])} characters, more than the "
            f"{limits.max_input_chars} one text may have (embeddings.max_input_chars); "
            "shorten or split it (the model reads the first 256 tokens of a text)",
            param="input")
    total = sum(map(len, texts))
    if total > limits.max_total_chars:
        raise RequestError(
            f"input: {total} characters in all, more than the {limits.max_total_chars} a "
            f"request may carry (embeddings.max_total_chars); {hint}", param="input")
