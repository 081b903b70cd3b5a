"""The concrete :class:`~assistant.skills.SkillContext`, built on any :class:`Backend`.

The daemon builds one per turn from the model host backend; the test kit builds one from the
fake model. It depends on nothing but the Backend contract.

``sentences`` and ``detect_language`` come from :mod:`assistant.text` (spaCy sentence rules, the
packaged lingua detector), imported on first use. The regex and stop-word helpers below are the
dependency-free fallbacks they grew from, kept for callers that must not load either.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from assistant.models.backend import Backend, ChatMessage, GenerationParams
from assistant.skills import DocumentSearch, SkillContext

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=\S)|(?<=[。！？])")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_WORD = re.compile(r"[a-zà-ÿß]+")
_STOPWORDS = {
    "en": "the and is are to of you what how this that it in for with please my",
    "fr": "le la les et est des un une je vous que qui pour dans ce cette avec mon",
    "de": "der die das und ist nicht ich sie ein eine zu mit den von bitte mein",
    "es": "el la los las y es de que un una por para con en este esta mi",
    "it": "il lo la gli e di che un una per con non sono questo mio",
    "pt": "o os as e de que um uma para com não em este esta meu você",
}
_STOP = {lang: set(words.split()) for lang, words in _STOPWORDS.items()}


def split_sentences(text: str) -> list[str]:
    """Regex sentence split (fallback for spaCy): ``.!?…`` + space, or a CJK full stop."""
    parts: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        parts.extend(p.strip() for p in _SENTENCE_END.split(block.strip()))
    return [p for p in parts if p]


def guess_language(text: str) -> str:
    """Script first (ja/zh/ko), then the Latin language with most stop words; else ``und``."""
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if _HAN.search(text):
        return "zh"
    words = _WORD.findall(text.lower())
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOP.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] else "und"


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
    ) -> None:
        self.backend = backend
        self.cache_tag = cache_tag  # labels the model states of this conversation (see params)
        self.model = model
        self.embedding_model = embedding_model or model
        self.embedding_backend = embedding_backend or backend
        self.history = list(history)
        self.documents = documents
        self.config = dict(config or {})
        # What the client asked for (max_tokens, temperature, seed) when a skill passes none.
        self.params = params or GenerationParams()

    async def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams | None = None,
        model: str | None = None,
    ) -> AsyncIterator[str]:
        chosen = params or self.params
        if self.cache_tag:
            chosen = replace(chosen, cache_tag=self.cache_tag)
        stream = self.backend.chat(self._chat_model(model), list(messages), chosen)
        try:
            async for delta in stream:
                if delta.text:
                    yield delta.text
        finally:
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
