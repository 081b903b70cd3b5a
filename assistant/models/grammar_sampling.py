"""Sampling under a grammar, the grammar checked on the chosen token first.

llama-cpp-python puts the grammar in its sampler chain, so every step checks the whole
vocabulary against it (152k tokens for qwen2.5): decoding with a JSON schema ran at 0.58 of the
speed without. llama.cpp's own sampler (``common/sampling.cpp``) samples without the grammar,
asks the grammar about that one token, and only when the grammar refuses it samples again with
the grammar applied to every token. Greedy, the token is the same; sampling, it is what the
llama.cpp server does.

:class:`GrammarFirstLlama` is a ``Llama`` whose ``generate`` samples this way when it is given
a grammar; without one, nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import LlamaGrammar

# llama_token_data, as llama.h lays it out
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)],
                       align=True)


class GrammarFirst:
    """A sampler chain and a grammar, with ``sample(ctx, idx)`` as ``LlamaSampler`` has."""

    grammar: Any = None  # set first in __init__: __del__ may run after it failed

    def __init__(self, chain: Any, model: Any, grammar: LlamaGrammar, n_vocab: int) -> None:
        self.chain = chain  # a LlamaSampler without the grammar; freed with it
        self.grammar = llama_cpp.llama_sampler_init_grammar(
            model.vocab, grammar._grammar.encode(), grammar._root.encode())
        if not self.grammar:
            raise ValueError("llama.cpp cannot parse the grammar")
        self.n_vocab = n_vocab
        self._all = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._one = np.zeros(1, dtype=_TOKEN_DATA)
        self.rejected = 0  # tokens the grammar refused: sampled again over the grammar

    def _array(self, data: np.ndarray) -> llama_cpp.llama_token_data_array:
        return llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=len(data), selected=-1, sorted=False)

    def _candidates(self, ctx: Any, idx: int) -> llama_cpp.llama_token_data_array:
        """Every token with its logit at ``idx`` of the last batch, as llama.cpp takes them."""
        logits = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
        self._all["id"] = self._ids  # samplers sort the buffer in place: refill it whole
        self._all["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        self._all["p"] = 0.0
        return self._array(self._all)

    def _fits(self, token: int) -> bool:
        self._one["id"], self._one["logit"], self._one["p"] = token, 0.0, 0.0
        one = self._array(self._one)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(one))
        return not math.isinf(float(self._one["logit"][0]))

    def _choose(self, cur: llama_cpp.llama_token_data_array, *samplers: Any) -> int:
        """Apply ``samplers`` to ``cur`` in turn; the token the last one selected."""
        for sampler in samplers:
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(cur))
        if not 0 <= cur.selected < cur.size:  # llama.cpp asserts the same
            raise RuntimeError(f"the sampler chain selected no token ({cur.selected})")
        return int(cur.data[cur.selected].id)  # a sampler may replace the buffer

    def sample(self, ctx: Any, idx: int) -> int:
        token = self._choose(self._candidates(ctx, idx), self.chain.sampler)
        if not self._fits(token):
            self.rejected += 1
            token = self._choose(self._candidates(ctx, idx), self.grammar,
                                 self.chain.sampler)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain.sampler, token)
        return token

    def close(self) -> None:
        if self.grammar:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None
        self.chain.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit llama_cpp may be gone
            self.close()


class GrammarFirstLlama(llama_cpp.Llama):
    """A ``Llama`` whose ``generate`` samples under a grammar with :class:`GrammarFirst`
    (``grammar_first = False`` puts the grammar back in the chain, as llama-cpp-python does)."""

    grammar_first = True

    def _init_sampler(self, **kw: Any) -> Any:  # type: ignore[override]  # all by name
        grammar: LlamaGrammar | None = kw.get("grammar")
        if grammar is None or not self.grammar_first:
            return super()._init_sampler(**kw)
        chain = super()._init_sampler(**{**kw, "grammar": None})
        return GrammarFirst(chain, self._model, grammar, self.n_vocab())
