"""The concrete :class:`~assistant.skills.SkillContext`, built on any :class:`Backend`.

The daemon builds one per turn from the model host backend; the test kit builds one from the
fake model. It depends on nothing but the Backend contract.

Every generation asks for token log-probabilities when the model's backend reports them, and
the context keeps those of the last generation that produced a token (:attr:`reply_logprobs`):
the daemon turns them into the reply's confidence (:mod:`assistant.confidence`). The last
generation is the one whose text a skill answers with: chat's only one, qa's answer (or its
retry), summarize's reduce step, translate's last piece of a long text.

``sentences`` and ``detect_language`` come from :mod:`assistant.text` (spaCy sentence rules, the
packaged lingua detector), imported on first use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from assistant.models.backend import Backend, ChatMessage, GenerationParams
from assistant.skills import DocumentSearch, SkillContext


class BackendContext(SkillContext):
    """A context on ``backend``: ``model`` chats, ``embedding_model`` embeds."""

    def __init__(
        self,
        backend: Backend,
        model: str,
        *,
        embedding_model: str | None = None,
        embedding_backend: Backend | None = None,
        history: Sequence[ChatMessage] = (),
        documents: DocumentSearch | None = None,
        config: dict[str, Any] | None = None,
        params: GenerationParams | None = None,
        cache_tag: str | None = None,
        local_files: bool = False,
    ) -> None:
        self.backend = backend
        self.cache_tag = cache_tag  # labels the model states of this conversation (see params)
        self.model = model
        self.embedding_model = embedding_model or model
        self.embedding_backend = embedding_backend or backend
        self.history = list(history)
        self.documents = documents
        self.config = dict(config or {})
        self.local_files = local_files
        # What the client asked for (max_tokens, temperature, seed) when a skill passes none.
        self.params = params or GenerationParams()
        # The sampled tokens' log-probabilities of the last generation that produced one; None
        # before any, or when its model does not report them.
        self.reply_logprobs: list[float] | None = None

    @property
    def in_model_call(self) -> bool:
        return any(getattr(b, "in_flight", 0) for b in (self.backend, self.embedding_backend))

    async def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams | None = None,
        model: str | None = None,
    ) -> AsyncIterator[str]:
        chosen = params or self.params
        name = self._chat_model(model)
        if self.cache_tag:
            chosen = replace(chosen, cache_tag=self.cache_tag)
        if not chosen.logprobs and self.backend.reports_logprobs(name):
            # only the sampled token's: llama.cpp's logits row is summed once, no sorting
            chosen = replace(chosen, logprobs=True, top_logprobs=0)
        stream = self.backend.chat(name, list(messages), chosen)
        tokens: list[float] = []
        produced = False
        try:
            async for delta in stream:
                if delta.logprobs and not delta.index:  # of ``n`` replies, the first's
                    tokens.extend(float(e["logprob"]) for e in delta.logprobs)
                if delta.text:
                    produced = True
                    yield delta.text
        finally:
            if tokens or produced:  # text without logprobs: a model that did not report them
                self.reply_logprobs = tokens or None
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def count_tokens(
        self, messages: Sequence[ChatMessage], model: str | None = None
    ) -> int:
        return await self.backend.count_tokens(self._chat_model(model), list(messages))

    async def context_length(self, model: str | None = None) -> int | None:
        return await self.backend.context_length(self._chat_model(model))

    def _chat_model(self, model: str | None) -> str:
        """The model ``generate`` uses: the one asked for, the skill's configured one, ours."""
        return str(model or self.config.get("model") or self.model)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.embedding_backend.embed(self.embedding_model, texts)

    def sentences(self, text: str, lang: str | None = None) -> list[str]:
        from assistant.text import sentences

        return sentences(text, lang)

    def detect_language(self, text: str) -> str:
        from assistant.text import detect_language

        return detect_language(text)
