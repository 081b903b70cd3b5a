"""A GGUF chat model run by llama.cpp. Imported only inside the model host process.

The live context keeps the evaluated tokens, and the next prompt reuses their longest common
prefix: a follow-up turn only evaluates its new tokens. The prompt is read here, one batch at a
time, so that a cancel stops it (see :meth:`LlamaRunner._read_prompt`); ``Llama.generate`` then
finds the whole prompt evaluated and only samples.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import json
import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

from assistant.models import tool_calls
from assistant.models.abort import Abort
from assistant.models.grammar_sampling import GrammarFirstLlama
from assistant.models.kv_cache import StateCache, common_prefix, scope_key
from assistant.models.pieces import Piece, pieces, split_on_stops, token_entry
from assistant.models.template import ChatTemplate

# Restoring a saved state pays off once it spares this many tokens over the live context.
MIN_REUSE_GAIN = 32
# Shorter sequences are cheaper to recompute than to save.
MIN_SAVED_TOKENS = 64


class LlamaRunner:
    def __init__(
        self, path: str, *, n_ctx: int, n_threads: int, state_dir: str | None = None,
        state_ram_bytes: int = 1 << 30, state_disk_bytes: int = 4 << 30,
    ) -> None:
        self.path = path
        self.llm = GrammarFirstLlama(
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
        self._abort = Abort(self.llm._ctx.ctx)

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
        memory = llama_cpp.llama_get_memory(ctx)
        if memory is not None and llama_cpp.llama_memory_seq_pos_max(memory, 0) != n - 1:
            return  # the cache does not hold exactly input_ids[:n]: a state must never lie
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

    def _reuse(self, prompt: list[int]) -> None:
        """Make the live context the best start for ``prompt`` (a saved state that shares more
        of it than the live sequence does is restored); ``_read_prompt`` reads the rest."""
        wanted = np.array(prompt, dtype=np.int32)
        live = common_prefix(np.array(self.llm.input_ids[: self.llm.n_tokens]), wanted)
        entry, length = self.states.best(wanted)
        if entry is None or length < live + MIN_REUSE_GAIN:
            if live < MIN_REUSE_GAIN and len(prompt) >= MIN_SAVED_TOKENS:
                self.states.misses += 1
            return
        data = self.states.load(entry)
        if data is None:
            return
        self.save_state()  # the conversation we leave
        ctx = self.llm._ctx.ctx
        self.llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if not llama_cpp.llama_state_seq_set_data(ctx, buffer, len(data), 0):
            self.llm.reset()  # type: ignore[no-untyped-call]  # unusable: recompute
            return
        k = len(entry.tokens)
        self.llm.input_ids[:k] = entry.tokens
        self.llm.n_tokens = k
        self.llm._requires_eval = True  # the logits belong to another sequence
        self.states.touch(entry)
        self.states.hits += 1

    def _read_prompt(self, tokens: list[int], cancelled: Callable[[], bool]) -> tuple[int, int]:
        """Evaluate what the live context lacks of ``tokens``: (tokens kept, tokens evaluated).

        The same ``n_batch`` batches, one ``llama_decode`` each, as ``Llama.eval`` would make,
        so this costs nothing over it; ``cancelled`` is checked before each batch and, through
        llama.cpp's abort callback, between the graph nodes of the batch being read. A batch
        cut short is dropped from the KV cache, so the context always holds exactly
        ``input_ids[:n_tokens]``: a prefix of the prompt that the next request reuses as any
        live prefix (reading the same batches a read in one go would have), and that a saved
        state may hold. A recurrent or hybrid model (Mamba, RWKV…) rewrites its state in place
        and cannot drop half a batch: it is only stopped between batches.
        """
        llm = self.llm
        n = len(tokens)
        live = common_prefix(np.array(llm.input_ids[: llm.n_tokens]), np.array(tokens))
        if live == n == llm.n_tokens and not llm._requires_eval:
            return n, 0  # the prompt is the live sequence and its logits are current
        # Keep at least the last prompt token to evaluate: sampling needs its logits.
        start = min(live, n - 1)
        if start < llm.n_tokens:
            if not llm._ctx.kv_cache_seq_rm(-1, start, -1):  # no partial removal: recompute
                llm.reset()  # type: ignore[no-untyped-call]
                llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
                start = 0
            llm.n_tokens = start
            llm._requires_eval = True
        batch = llm.n_batch
        kept = start
        in_place = bool(llm._is_recurrent or llm._is_hybrid)
        with contextlib.nullcontext() if in_place else self._abort.armed(cancelled):
            while llm.n_tokens < n and not cancelled():
                end = min(n, llm.n_tokens + batch)
                try:
                    llm.eval(tokens[llm.n_tokens:end])
                except RuntimeError:
                    if not self._abort.fired:
                        raise
                    # The logits may be the cut batch's: never sample from them.
                    llm._requires_eval = True
                    # llama.cpp drops the aborted batch itself; make sure of it, or start over.
                    if not llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1):
                        llm.reset()  # type: ignore[no-untyped-call]
                        llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
                        self._dirty = False
                        return 0, 0
                    break
                self._dirty = True
        return kept, llm.n_tokens - start

    def _grammar(self, params: dict[str, Any]) -> LlamaGrammar | None:
        """The grammar the reply must follow (``grammar``, GBNF, or ``json_schema``), checked
        here: llama-cpp-python adds a grammar llama.cpp refused to its sampler as a null
        pointer, which crashes the process at the first token."""
        text = params.get("grammar")
        schema = params.get("json_schema")
        if text is None and schema is None:
            return None
        if text is None:
            try:
                text = json_schema_to_gbnf(json.dumps(schema))
            except Exception as exc:  # the converter asserts and raises as it goes
                raise GrammarRefused("response_format: the JSON schema cannot be turned "
                                     f"into a grammar: {str(exc)[:200]}") from None
        grammar = LlamaGrammar.from_string(text, verbose=False)
        sampler = llama_cpp.llama_sampler_init_grammar(
            self.llm._model.vocab, text.encode(), grammar._root.encode())
        if not sampler:
            raise GrammarRefused("grammar: llama.cpp cannot parse it (GBNF, with a root rule)")
        llama_cpp.llama_sampler_free(sampler)
        return grammar

    def _calls_grammar(self, tools: list[dict[str, Any]], forced: str | None,
                       parallel: bool) -> LlamaGrammar:
        """The grammar of calls to ``tools``; :class:`GrammarRefused` naming ``tools`` when
        their schemas cannot make one."""
        try:
            text = tool_calls.call_grammar(tools, forced, parallel)
        except Exception as exc:  # the converter asserts as it goes
            raise GrammarRefused("tools: the functions' parameters cannot be turned into a "
                                 f"grammar: {str(exc)[:200]}") from None
        try:
            grammar = self._grammar({"grammar": text})
        except GrammarRefused:
            raise GrammarRefused("tools: llama.cpp cannot parse the grammar the functions' "
                                 "parameters make (a $ref that refers to itself?)") from None
        assert grammar is not None
        return grammar

    def tokens_for(self, messages: list[dict[str, Any]],
                   tools: list[dict[str, Any]] | None = None) -> list[int]:
        prompt = self.template.render(messages, tools=tools)
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def count(self, messages: list[dict[str, Any]]) -> int:
        return len(self.tokens_for(messages))

    def prompt_tokens(self, prompt: str) -> list[int]:
        """A raw prompt's tokens, read as llama.cpp's server reads one: the model's start token
        when its metadata asks for one, then the text with no special tokens (a user's text
        must never become control tokens)."""
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=False)
        bos = self.llm.token_bos()
        if self.llm._model.add_bos_token() and bos >= 0:
            tokens.insert(0, bos)
        if not tokens:
            raise PromptRefused("prompt: empty, and this model starts from no token of its "
                                "own; give some text")
        return tokens

    def chat(
        self, messages: list[dict[str, Any]], params: dict[str, Any],
        cancelled: Callable[[], bool],
    ) -> Iterator[Piece]:
        choice = params.get("tool_choice") or "auto"
        tools = (params.get("tools") or []) if choice != "none" else []
        parallel = bool(params.get("parallel_tool_calls", True))
        grammar = calls = None  # the reply's grammar; that of calls, once one has begun
        if tools and choice == "required":  # a call is due: its form is the grammar's
            grammar = self._calls_grammar(tools, params.get("forced_tool"), parallel)
        elif tools and params.get("call_grammar"):  # the daemon: on, and schemas enforceable
            try:
                calls = self._calls_grammar(tools, None, parallel)
            except GrammarRefused:
                if any(t.get("strict") for t in tools):
                    raise
                calls = None  # calls are read as the model writes them
        yield from self._generate(self.tokens_for(messages, tools), params, cancelled,
                                  {t["name"] for t in tools}, calls, grammar)

    def complete(
        self, prompt: str, params: dict[str, Any], cancelled: Callable[[], bool],
    ) -> Iterator[Piece]:
        """Continue ``prompt``, raw text with no chat template."""
        yield from self._generate(self.prompt_tokens(prompt), params, cancelled)

    def _generate(
        self, tokens: list[int], params: dict[str, Any], cancelled: Callable[[], bool],
        tool_names: set[str] | None = None, calls: LlamaGrammar | None = None,
        grammar: LlamaGrammar | None = None,
    ) -> Iterator[Piece]:
        """Read ``tokens`` (reusing what the context holds) and sample ``params["n"]`` replies
        to them, one after the other: each starts from the prompt the context still holds, so
        the prompt is read once. Calls to ``tool_names`` are found in each, and the rest of a
        call the model begins is sampled under ``calls``, the grammar of calls, if given.
        ``grammar`` (or the one ``params`` give) shapes the whole reply."""
        n_ctx = self.llm.n_ctx()
        if len(tokens) >= n_ctx:
            raise ContextLengthExceeded(
                f"the prompt takes {len(tokens)} tokens; the context holds {n_ctx}"
            )
        grammar = grammar or self._grammar(params)
        bias = self._logit_bias(params)
        if cancelled():  # cancelled while it waited for the worker: read no prompt at all
            yield Piece("", finish_reason="cancelled", prompt_tokens=len(tokens))
            return
        self._reuse(tokens)  # saves the outgoing conversation under its own tag
        self._tag = str(params.get("cache_tag") or "")
        started = time.perf_counter()
        reused, evaluated = self._read_prompt(tokens, cancelled)
        timings = {"cached_tokens": float(reused), "evaluated_tokens": float(evaluated)}
        count = max(1, int(params.get("n") or 1))
        for index in range(count):
            if index:  # back to the prompt: the last reply's tokens are dropped
                self._read_prompt(tokens, cancelled)
                started = time.perf_counter()
            if self.llm.n_tokens < len(tokens):  # cancelled while it read the prompt
                yield Piece("", finish_reason="cancelled", prompt_tokens=len(tokens), timings={
                    "prompt_s": time.perf_counter() - started, "decode_s": 0.0,
                    "tokens_per_s": 0.0, **timings}, index=index)
                break
            reader = tool_calls.CallReader(tool_names) if tool_names else None
            end = yield from self._reply(tokens, params, cancelled, grammar, bias, reader,
                                         index, calls)
            end.timings.update(timings, prompt_s=end.timings["prompt_s"] + (
                end.timings.pop("started") - started))
            end.last = index == count - 1 or end.finish_reason == "cancelled"
            yield end
            if end.finish_reason == "cancelled":
                break
        # After the reply is out: keep this conversation's state for its next turn or a restart.
        self.save_state()

    def _reply(
        self, tokens: list[int], params: dict[str, Any], cancelled: Callable[[], bool],
        grammar: LlamaGrammar | None, bias: Callable[..., Any] | None,
        reader: tool_calls.CallReader | None, index: int, calls: LlamaGrammar | None = None,
    ) -> Generator[Piece, None, Piece]:
        """Sample one reply to ``tokens``, which the context holds: its pieces, and (returned)
        the piece that ends it.

        When ``reader`` sees a call begin and ``calls`` is given, the call is made again under
        that grammar from where it began (the text before it kept, read again as the prompt's
        end), so that it names an offered function and its arguments validate, as llama.cpp's
        server does with a lazy grammar.
        """
        room = self.llm.n_ctx() - len(tokens)
        max_tokens = min(int(params.get("max_tokens") or room), room)
        parallel = bool(params.get("parallel_tool_calls", True))
        top = int(params.get("top_logprobs") or 0) if params.get("logprobs") else -1
        # The sampler takes the context's seed: set it on every request, or one client's
        # seed would fix the sampling of every later request. Each reply has its own.
        seed = params.get("seed")
        self.llm.set_seed(int(seed) + index if seed is not None
                          else llama_cpp.LLAMA_DEFAULT_SEED)
        stops: list[str] = [s for s in params.get("stop") or [] if s]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        started = time.perf_counter()
        first_token_at = 0.0
        pending = ""  # text held back while it could still become a stop string
        logprobs: list[dict[str, Any]] = []  # of tokens whose text is not sent yet
        produced = 0
        finish = "length"
        stop_hit = False
        self._dirty = True
        def sampling(prompt: list[int], grammar: LlamaGrammar | None) -> Generator[int, Any, None]:
            return self.llm.generate(
                prompt, temp=float(params.get("temperature", 0.7)),
                top_p=float(params.get("top_p", 0.95)),
                repeat_penalty=float(params.get("repeat_penalty", 1.0)),
                frequency_penalty=float(params.get("frequency_penalty", 0.0)),
                presence_penalty=float(params.get("presence_penalty", 0.0)), reset=True,
                top_k=int(params.get("top_k", 40)), min_p=float(params.get("min_p", 0.05)),
                grammar=grammar,
                logits_processor=llama_cpp.LogitsProcessorList([bias]) if bias else None,
            )

        generator = sampling(tokens, grammar)
        try:
            while (token := next(generator, None)) is not None:
                if cancelled():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
                    finish = "stop"
                    break
                produced += 1
                if not first_token_at:
                    first_token_at = time.perf_counter()
                raw = self.llm.detokenize([token], special=False)
                if top >= 0:
                    logprobs.append(self._logprob(token, raw, top))
                pending += decoder.decode(raw)
                # A stop string ends the text, not a call: inside one, it is part of the call.
                live = stops if reader is None or not reader.in_call else []
                emit, pending, hit = split_on_stops(pending, live)
                for piece in pieces(emit, reader, index):
                    piece.logprobs, logprobs = logprobs or None, []
                    yield piece
                if hit:
                    finish, stop_hit = "stop", True
                    break
                if reader is not None and reader.calls and not parallel:
                    finish = "stop"  # one call was asked for: it is made
                    break
                if produced >= max_tokens:
                    break
                before = reader.starting() if calls is not None and reader else None
                if before is not None and reader is not None:  # a call begins: under grammar
                    reader.restart()
                    generator.close()
                    prefix = self.llm.tokenize(before.encode(), add_bos=False, special=False)
                    generator = sampling(tokens + prefix, calls)
                    produced, calls, pending, logprobs = len(prefix), None, "", []
                    decoder.reset()
        finally:
            generator.close()
        if not stop_hit:
            pending += decoder.decode(b"", final=True)
            yield from pieces(pending, reader, index)
        if reader is not None:
            yield from pieces("", reader, index, end=True)
        ended = time.perf_counter()
        decode_s = ended - (first_token_at or ended)
        return Piece(
            "", finish_reason=finish, prompt_tokens=len(tokens), completion_tokens=produced,
            index=index, logprobs=logprobs or None, timings={
                "started": started,
                "prompt_s": (first_token_at or ended) - started,
                "decode_s": decode_s,
                "tokens_per_s": (produced - 1) / decode_s if produced > 1 and decode_s else 0.0,
            },
        )

    def _logit_bias(self, params: dict[str, Any]) -> Callable[..., Any] | None:
        """``params["logit_bias"]`` (token id → a number added to its logit) as a logits
        processor; an id outside the vocabulary is refused."""
        bias = params.get("logit_bias") or {}
        if not bias:
            return None
        n_vocab = self.llm.n_vocab()
        ids = np.array([int(k) for k in bias], dtype=np.int64)
        wrong = [int(i) for i in ids if not 0 <= i < n_vocab]
        if wrong:
            raise ParamRefused(f"logit_bias: token {wrong[0]} is not in this model's vocabulary "
                               f"(ids 0 to {n_vocab - 1})")
        values = np.array(list(bias.values()), dtype=np.float32)

        def add(_input_ids: Any, logits: Any) -> Any:
            logits[ids] += values
            return logits

        return add

    def _logprob(self, token: int, raw: bytes, top: int) -> dict[str, Any]:
        """OpenAI's ``logprobs.content`` item for ``token``, just sampled: its log-probability
        under the model (before temperature, penalties, bias and grammar) and the ``top``
        likeliest tokens'."""
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1),
                                       shape=(self.llm.n_vocab(),)).astype(np.float64)
        peak = logits.max()
        total = peak + math.log(float(np.exp(logits - peak).sum()))
        entry = token_entry(raw, float(logits[token] - total))
        if top:
            best = np.argpartition(-logits, top)[:top]
            best = best[np.argsort(-logits[best], kind="stable")]
            entry["top_logprobs"] = [
                token_entry(self.llm.detokenize([int(t)], special=False),
                             float(logits[t] - total)) for t in best]
        else:
            entry["top_logprobs"] = []
        return entry


class ContextLengthExceeded(ValueError):
    pass


class GrammarRefused(ValueError):
    """A grammar llama.cpp cannot parse, or a schema it cannot turn into one."""


class ParamRefused(ValueError):
    """A request's value the model cannot take; the message starts with the field at fault."""


class PromptRefused(ValueError):
    """A raw prompt that cannot be completed; the message starts with the field at fault."""
