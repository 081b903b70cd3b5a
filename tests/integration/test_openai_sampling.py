"""``n``, ``logprobs``/``top_logprobs`` and ``logit_bias`` through the official openai SDK, on
the real daemon and smollm2, chat and legacy completions (issue 16)."""

from __future__ import annotations

import functools
import math
from typing import Any

import openai
import pytest

from tests.integration.conftest import CHAT_MODEL, RunningDaemon
from tests.integration.test_daemon_api import sdk

pytestmark = pytest.mark.integration

ASK = [{"role": "user", "content": "Name a colour."}]


def ask(daemon: RunningDaemon, **kwargs: Any) -> Any:
    return sdk(daemon).chat.completions.create(
        model=kwargs.pop("model", CHAT_MODEL), messages=kwargs.pop("messages", ASK),
        max_tokens=kwargs.pop("max_tokens", 8), seed=kwargs.pop("seed", 5), **kwargs)


def test_n_replies_logprobs_and_logit_bias(daemon: RunningDaemon) -> None:
    # n: three replies to one prompt, each with its own end; the prompt is counted once.
    three = ask(daemon, n=3, temperature=1.0)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert all(c.message.content and c.finish_reason in {"stop", "length"}
               for c in three.choices)
    assert len({c.message.content for c in three.choices}) > 1  # sampled, not copied
    one = ask(daemon, temperature=1.0)
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    cut = sum(c.finish_reason == "length" for c in three.choices)  # each took max_tokens
    assert 8 * cut < three.usage.completion_tokens <= 8 * 3 or three.usage.completion_tokens == 24

    # Streamed, the chunks of two replies are told apart by index; each ends on its own.
    texts: dict[int, str] = {}
    ends: dict[int, str] = {}
    for chunk in ask(daemon, n=2, temperature=1.0, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                ends[choice.index] = choice.finish_reason
    assert sorted(texts) == sorted(ends) == [0, 1] and all(texts.values())

    # logprobs: one item per token, its text the reply's; greedy, the token is the likeliest.
    greedy = ask(daemon, temperature=0, logprobs=True, top_logprobs=3).choices[0]
    items = greedy.logprobs.content
    assert len(items) == 8 and "".join(i.token for i in items) == greedy.message.content
    for item in items:
        alternatives = [t.logprob for t in item.top_logprobs]
        assert len(alternatives) == 3 and alternatives == sorted(alternatives, reverse=True)
        assert item.token == item.top_logprobs[0].token
        assert math.isclose(item.logprob, alternatives[0]) and item.logprob <= 0
        assert bytes(item.bytes or []).decode() == item.token
    assert sum(math.exp(t.logprob) for t in items[0].top_logprobs) <= 1.0001
    assert ask(daemon, temperature=0).choices[0].logprobs is None  # not asked for

    # logit_bias: the first token, banned, is never the first again.
    first = greedy.logprobs.content[0]
    token_id = _token_id(first.token)
    banned = ask(daemon, temperature=0, logprobs=True, logit_bias={str(token_id): -100})
    assert banned.choices[0].logprobs.content[0].token != first.token
    favoured = ask(daemon, temperature=0, max_tokens=1, logit_bias={str(_token_id(" blue")): 100})
    assert favoured.choices[0].message.content == " blue"

    # Legacy completions: n replies, and logprobs in that route's shape.
    completion = sdk(daemon).completions.create(model=CHAT_MODEL, prompt="1, 2, 3,", n=2,
                                                max_tokens=4, temperature=0, logprobs=2)
    assert [c.index for c in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert choice.logprobs is not None
        assert "".join(choice.logprobs.tokens or []) == choice.text
        assert all(len(top) == 2 for top in choice.logprobs.top_logprobs or [])
        assert choice.logprobs.text_offset and choice.logprobs.text_offset[0] == 0

    # Out of range, or for the routed model: a 400 naming the field.
    for kwargs, param in [({"logit_bias": {"99999999": 1}}, "logit_bias"),
                          ({"logit_bias": {"1": 101}}, "logit_bias"),
                          ({"n": 9}, "n"), ({"top_logprobs": 21, "logprobs": True},
                                            "top_logprobs"),
                          ({"top_logprobs": 2}, "top_logprobs"),
                          ({"model": "assistant", "n": 2}, "n"),
                          ({"model": "assistant", "logprobs": True}, "logprobs")]:
        with pytest.raises(openai.BadRequestError) as refused:
            ask(daemon, **kwargs)
        assert refused.value.body["param"] == param, (kwargs, refused.value.body)  # type: ignore[index]


@functools.cache
def _token_id(text: str) -> int:
    """smollm2's id for ``text``, one token (from the model file's vocabulary)."""
    import llama_cpp

    from tests.conftest import TEST_MODELS_DIR

    vocab = llama_cpp.Llama(str(TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"),
                            vocab_only=True, verbose=False)
    ids = vocab.tokenize(text.encode(), add_bos=False, special=False)
    assert len(ids) == 1, (text, ids)
    return int(ids[0])
