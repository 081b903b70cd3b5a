"""A GGUF chat model run by llama.cpp. Imported only inside the model host process.

Generation uses ``Llama.generate``, which keeps the evaluated tokens and reuses the longest
common prefix of the next prompt: a follow-up turn only evaluates its new tokens.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from assistant.models.template import ChatTemplate


@dataclass
class Piece:
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class LlamaRunner:
    def __init__(self, path: str, *, n_ctx: int, n_threads: int) -> None:
        self.path = path
        self.llm = llama_cpp.Llama(
            model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
            n_batch=512, verbose=False,
        )
        metadata: dict[str, str] = dict(self.llm.metadata)
        self.template = ChatTemplate.from_metadata(metadata, self._token_text)

    @staticmethod
    def library_version() -> str:
        return str(getattr(llama_cpp, "__version__", "unknown"))

    def _token_text(self, token_id: int) -> str:
        return self.llm.detokenize([token_id], special=True).decode("utf-8", "replace")

    def info(self) -> dict[str, Any]:
        return {
            "n_ctx": self.llm.n_ctx(),
            "n_ctx_train": self.llm._model.n_ctx_train(),
            "template": self.template.source_name,
            "llama_cpp": self.library_version(),
        }

    def close(self) -> None:
        self.llm.close()

    def tokens_for(self, messages: list[dict[str, str]]) -> list[int]:
        prompt = self.template.render(messages)
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def count(self, messages: list[dict[str, str]]) -> int:
        return len(self.tokens_for(messages))

    def chat(
        self, messages: list[dict[str, str]], params: dict[str, Any],
        cancelled: Callable[[], bool],
    ) -> Iterator[Piece]:
        tokens = self.tokens_for(messages)
        n_ctx = self.llm.n_ctx()
        if len(tokens) >= n_ctx:
            raise ContextLengthExceeded(
                f"the prompt takes {len(tokens)} tokens; the context holds {n_ctx}"
            )
        room = n_ctx - len(tokens)
        max_tokens = min(int(params.get("max_tokens") or room), room)
        if params.get("seed") is not None:
            self.llm.set_seed(int(params["seed"]))
        stops: list[str] = [s for s in params.get("stop") or [] if s]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        started = time.perf_counter()
        first_token_at = 0.0
        pending = ""  # text held back while it could still become a stop string
        produced = 0
        finish = "length"
        stop_hit = False
        generator = self.llm.generate(
            tokens, temp=float(params.get("temperature", 0.7)),
            top_p=float(params.get("top_p", 0.95)), top_k=40, min_p=0.05,
            repeat_penalty=1.0, reset=True,
        )
        try:
            for token in generator:
                if cancelled():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
                    finish = "stop"
                    break
                produced += 1
                if not first_token_at:
                    first_token_at = time.perf_counter()
                pending += decoder.decode(self.llm.detokenize([token], special=False))
                emit, pending, hit = _split_on_stops(pending, stops)
                if emit:
                    yield Piece(emit)
                if hit:
                    finish, stop_hit = "stop", True
                    break
                if produced >= max_tokens:
                    break
        finally:
            generator.close()
        if not stop_hit:
            pending += decoder.decode(b"", final=True)
            if pending:
                yield Piece(pending)
        ended = time.perf_counter()
        decode_s = ended - (first_token_at or ended)
        yield Piece(
            "", finish_reason=finish, prompt_tokens=len(tokens), completion_tokens=produced,
            timings={
                "prompt_s": (first_token_at or ended) - started,
                "decode_s": decode_s,
                "tokens_per_s": (produced - 1) / decode_s if produced > 1 and decode_s else 0.0,
            },
        )


class ContextLengthExceeded(ValueError):
    pass


def _split_on_stops(text: str, stops: list[str]) -> tuple[str, str, bool]:
    """Split ``text`` into what is safe to emit, what to hold back, and whether a stop hit."""
    if not stops:
        return text, "", False
    for stop in stops:
        at = text.find(stop)
        if at >= 0:
            return text[:at], "", True
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold], text[len(text) - hold:], False
