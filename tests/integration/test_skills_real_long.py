"""Summarizing a 50-page text on the real smollm2-135m: it finishes, reports progress, and no
generation request ever asks for more than the model's context."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from assistant.config import load_settings
from assistant.context import BackendContext
from assistant.eval.backend import eval_backend
from assistant.models.backend import Backend, ChatMessage, Delta, GenerationParams, ModelInfo
from assistant.skills import Done, ErrorEvent, Progress, Turn, collect, execute
from tests.conftest import TEST_MODELS_DIR

# Minutes of prompt reading even on a quiet machine: run with the quality tests (`make quality`),
# not in `make test`, whose whole run must stay under CI's 30 minutes.
pytestmark = [pytest.mark.integration, pytest.mark.quality]
MODEL = "smollm2-135m"
CONTEXT = 4096
WORDS_PER_PAGE = 500

PEOPLE = ["Ada", "Bruno", "Chen", "Dalia", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun"]
PLACES = ["the harbour", "the mill", "the old bridge", "the market square", "the school",
          "the lighthouse", "the orchard", "the railway station", "the library", "the quarry"]
DEEDS = ["repaired the roof of", "painted the doors of", "counted the boats at",
         "planted forty trees near", "held a meeting at", "found an old map in",
         "sold fresh bread at", "measured the river beside", "lost a key at", "sang a song at"]
WEATHER = ["It rained all morning", "The wind came from the north", "Snow covered the hills",
           "The sun was warm", "Fog hid the valley", "A storm passed in the night"]


def fifty_pages(seed: int = 50) -> str:
    """About 25,000 words of varied, plain English prose: 50 pages of a village chronicle."""
    rng = random.Random(seed)
    pages = []
    for page in range(1, 51):
        sentences = [f"Page {page} of the chronicle."]
        words = 0
        while words < WORDS_PER_PAGE:
            sentence = rng.choice([
                f"On day {rng.randint(1, 365)} {rng.choice(PEOPLE)} {rng.choice(DEEDS)} "
                f"{rng.choice(PLACES)}.",
                f"{rng.choice(WEATHER)}, so {rng.choice(PEOPLE)} stayed near "
                f"{rng.choice(PLACES)} with {rng.choice(PEOPLE)}.",
                f"The council paid {rng.randint(2, 900)} coins to {rng.choice(PEOPLE)}, who had "
                f"{rng.choice(DEEDS)} {rng.choice(PLACES)}.",
                f"Nobody expected that {rng.choice(PEOPLE)} would visit {rng.choice(PLACES)} "
                f"{rng.randint(2, 12)} times that season.",
            ])
            sentences.append(sentence)
            words += len(sentence.split())
        pages.append(" ".join(sentences))
    return "\n\n".join(pages)


class Recording(Backend):
    """The real backend, noting each request's ``max_tokens`` and its prompt tokens: counted
    before it is sent, then as the model read them when its reply finishes (a reply the loop
    guard cuts never finishes)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.requests: list[list[int]] = []  # [prompt tokens, max_tokens asked]

    def models(self) -> list[ModelInfo]:
        return self.inner.models()

    async def chat(self, model: str, messages: list[ChatMessage], params: GenerationParams
                   ) -> AsyncIterator[Delta]:
        request = [await self.inner.count_tokens(model, messages), params.max_tokens or CONTEXT]
        self.requests.append(request)
        async for delta in self.inner.chat(model, messages, params):
            if delta.finish_reason is not None:
                request[0] = delta.prompt_tokens
            yield delta

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return await self.inner.embed(model, texts)


def test_the_text_is_fifty_pages() -> None:
    text = fifty_pages()
    assert 25_000 <= len(text.split()) <= 26_500 and text.count("\n\n") == 49


@pytest.mark.asyncio
@pytest.mark.timeout(1800)  # ~31,000 prompt tokens to read: minutes on a busy 2-core machine
async def test_summarizing_fifty_pages_stays_within_the_context(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not (TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf").exists():
        pytest.fail(f"test models missing in {TEST_MODELS_DIR}: run `make test-models`")
    from assistant_plugins.summarize import Summarize

    monkeypatch.setenv("ASSISTANT_MODELS__CONTEXT_LENGTH", str(CONTEXT))
    async with eval_backend(load_settings()) as eb:
        recording = Recording(eb.models)
        ctx = BackendContext(recording, MODEL, config={
            "context_tokens": CONTEXT, "partial_tokens": 32})
        out, events = await collect(execute(
            Summarize(), Turn("Summarize this", args={"text": fifty_pages()}), ctx, 1700))
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    assert isinstance(events[-1], Done) and events[-1].status == "complete" and out.strip()
    progress = [e for e in events if isinstance(e, Progress)]
    assert len(progress) >= 30 and any(e.message == "combining" for e in progress)
    # One request per chunk of every round, and one for the final summary: all were read.
    assert len(recording.requests) == sum(e.message != "combining" for e in progress) + 1
    assert all(prompt > 0 for prompt, _ in recording.requests)
    assert all(prompt + asked <= CONTEXT for prompt, asked in recording.requests), \
        max(recording.requests)
