"""Perplexity of a GGUF model on a text file. Run as a child process (it imports llama_cpp):

    python -m assistant.eval.perplexity MODEL.gguf TEXT.txt [MAX_TOKENS]

Prints ``{"perplexity", "tokens"}`` as JSON. The text is scored in windows of the context,
each token predicted from the tokens before it in its window.
"""

from __future__ import annotations

import json
import math
import os
import sys


def perplexity(model_path: str, text: str, max_tokens: int = 2048, n_ctx: int = 512) -> dict[
        str, float]:
    import numpy as np
    from llama_cpp import Llama

    from assistant.models import cpu
    from assistant.models.llama import FLASH_ATTENTION

    cpu.load()
    llm = Llama(model_path=model_path, n_ctx=n_ctx, logits_all=True, verbose=False,
                n_threads=len(os.sched_getaffinity(0)), flash_attn=FLASH_ATTENTION)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True)[:max_tokens]
    nll, count = 0.0, 0
    for start in range(0, len(tokens) - 1, n_ctx - 1):
        window = tokens[start:start + n_ctx]
        if len(window) < 2:
            break
        llm.reset()  # type: ignore[no-untyped-call]
        llm.eval(window)
        logits = np.asarray(llm.scores[: len(window)], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        for i in range(len(window) - 1):
            nll -= logprobs[i, window[i + 1]]
            count += 1
    return {"perplexity": math.exp(nll / max(count, 1)), "tokens": count}


if __name__ == "__main__":
    path, text_file = sys.argv[1], sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
    with open(text_file, encoding="utf-8") as handle:
        result = perplexity(path, handle.read(), limit)
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))
