"""A GGUF chat model run by llama.cpp. Imported only inside the model host process.

Generation uses ``Llama.generate``, which keeps the evaluated tokens and reuses the longest
common prefix of the next prompt: a follow-up turn only evaluates its new tokens.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from assistant.models.kv_cache import StateCache, common_prefix, scope_key
from assistant.models.template import ChatTemplate

# Restoring a saved state pays off once it spares this many tokens over the live context.
MIN_REUSE_GAIN = 32
# Shorter sequences are cheaper to recompute than to save.
MIN_SAVED_TOKENS = 64


@dataclass
class Piece:
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class LlamaRunner:
    def __init__(
        self, path: str, *, n_ctx: int, n_threads: int, state_dir: str | None = None,
        state_ram_bytes: int = 1 << 30, state_disk_bytes: int = 4 << 30,
    ) -> None:
        self.path = path
        self.llm = llama_cpp.Llama(
            model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
            n_batch=512, verbose=False,
        )
        metadata: dict[str, str] = dict(self.llm.metadata)
        self.template = ChatTemplate.from_metadata(metadata, self._token_text)
        info = os.stat(path)
        scope = scope_key(os.path.realpath(path), info.st_size, info.st_mtime_ns,
                          self.llm.n_ctx(), 512, metadata.get("tokenizer.chat_template"),
                          self.library_version())
        self.states = StateCache(Path(state_dir) / scope if state_dir else None,
                                 state_ram_bytes, state_disk_bytes)
        self._dirty = False  # the live sequence has tokens no saved state holds
        self._tag = ""  # the conversation the live sequence belongs to (params["cache_tag"])

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
        self.save_state()
        self.llm.close()

    # -- saved states ------------------------------------------------------------------------

    def save_state(self) -> None:
        """Keep the live sequence's KV state (RAM, then disk) so a return to it is cheap."""
        n = self.llm.n_tokens
        if not self._dirty or n < MIN_SAVED_TOKENS:
            return
        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        if written:
            tokens = np.array(self.llm.input_ids[:n], dtype=np.int32)
            self.states.put(tokens, bytes(memoryview(buffer)[:written]), self._tag)
            self._dirty = False

    def forget(self, tag: str) -> int:
        """Drop conversation ``tag``'s saved states, and the live sequence if it is that one."""
        removed = self.states.forget(tag)
        if tag and self._tag == tag:
            self.llm.reset()  # type: ignore[no-untyped-call]
            self.llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
            self._dirty, self._tag = False, ""
        return removed

    def _reuse(self, prompt: list[int]) -> int:
        """Make the live context the best start for ``prompt``; the tokens it spares."""
        wanted = np.array(prompt, dtype=np.int32)
        live = common_prefix(np.array(self.llm.input_ids[: self.llm.n_tokens]), wanted)
        entry, length = self.states.best(wanted)
        if entry is None or length < live + MIN_REUSE_GAIN:
            if live < MIN_REUSE_GAIN and len(prompt) >= MIN_SAVED_TOKENS:
                self.states.misses += 1
            return live
        data = self.states.load(entry)
        if data is None:
            return live
        self.save_state()  # the conversation we leave
        ctx = self.llm._ctx.ctx
        self.llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if not llama_cpp.llama_state_seq_set_data(ctx, buffer, len(data), 0):
            self.llm.reset()  # type: ignore[no-untyped-call]  # unusable: recompute
            return 0
        k = len(entry.tokens)
        self.llm.input_ids[:k] = entry.tokens
        self.llm.n_tokens = k
        self.llm._requires_eval = True  # the logits belong to another sequence
        self.states.touch(entry)
        self.states.hits += 1
        return length

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
        if cancelled():  # cancelled while it waited for the worker: read no prompt at all
            yield Piece("", finish_reason="cancelled", prompt_tokens=len(tokens))
            return
        reused = self._reuse(tokens)  # saves the outgoing conversation under its own tag
        self._tag = str(params.get("cache_tag") or "")
        # The sampler takes the context's seed: set it on every request, or one client's
        # seed would fix the sampling of every later request.
        seed = params.get("seed")
        self.llm.set_seed(int(seed) if seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        stops: list[str] = [s for s in params.get("stop") or [] if s]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        started = time.perf_counter()
        first_token_at = 0.0
        pending = ""  # text held back while it could still become a stop string
        produced = 0
        finish = "length"
        stop_hit = False
        self._dirty = True
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
                "cached_tokens": float(reused),
            },
        )
        # After the reply is out: keep this conversation's state for its next turn or a restart.
        self.save_state()


class ContextLengthExceeded(ValueError):
    pass


def _split_on_stops(text: str, stops: list[str]) -> tuple[str, str, bool]:
    """Split ``text`` into what is safe to emit, what to hold back, and whether a stop hit."""
    if not stops:
        return text, "", False
    hits = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    if hits:
        return text[: min(hits)], "", True
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold], text[len(text) - hold:], False
