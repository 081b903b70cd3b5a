"""/v1/completions through the official openai SDK, on the real daemon and smollm2: a raw
prompt continued with no chat template, streamed or not, stop strings and usage honoured, and
what cannot be honoured a 400 naming it (issue 16)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.integration.conftest import CHAT_MODEL, RunningDaemon
from tests.integration.test_daemon_api import sdk

pytestmark = pytest.mark.integration

COUNT = "1, 2, 3, 4, 5, 6,"


def complete(daemon: RunningDaemon, prompt: Any = COUNT, **kwargs: Any) -> Any:
    return sdk(daemon).completions.create(
        model=kwargs.pop("model", CHAT_MODEL), prompt=prompt,
        max_tokens=kwargs.pop("max_tokens", 8), temperature=0, seed=1, **kwargs)


def test_a_raw_prompt_is_continued_streamed_or_not_up_to_a_stop_string(
        daemon: RunningDaemon) -> None:
    whole = complete(daemon)
    assert whole.object == "text_completion"
    choice = whole.choices[0]
    assert choice.text.startswith(" 7, 8"), choice.text  # the text goes on: no chat template
    assert choice.finish_reason == "length"
    assert whole.usage is not None
    assert whole.usage.prompt_tokens > 10 and whole.usage.completion_tokens == 8
    # Another prompt in between, so that both requests read the prompt as a batch (see
    # test_daemon_api's stream test): llama.cpp's logits differ slightly otherwise.
    complete(daemon, prompt="The sea is", max_tokens=1)
    chunks = list(complete(daemon, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    # A stop string ends the completion before it.
    cut = complete(daemon, stop=[" 9"], max_tokens=12).choices[0]
    assert cut.text == " 7, 8," and cut.finish_reason == "stop"
    # "<|im_start|>" is one special token of smollm2; in a user's raw text it is plain text.
    raw = complete(daemon, prompt="<|im_start|>", max_tokens=1)
    assert raw.usage is not None and raw.usage.prompt_tokens > 1


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"model": "assistant"}, "model", "cannot complete raw text"),
    ({"prompt": ["one", "two"]}, "prompt", "one text prompt"),
    ({"prompt": [1, 2, 3]}, "prompt", "token arrays"),
    ({"prompt": ""}, "prompt", "empty"),  # smollm2 starts from no token of its own
    ({"prompt": "word " * 3000}, "prompt", "the context holds 2048"),
    ({"best_of": 2}, "best_of", "best_of = 1"),
    ({"echo": True}, "echo", "not echoed"),
    ({"suffix": "\n"}, "suffix", "insertion"),
    ({"extra_body": {"grammar": "root ::= ("}}, "grammar", "cannot parse"),
    ({"extra_body": {"mirostat": 2}}, "mirostat", "not supported"),
]


def test_what_cannot_be_honoured_is_a_400_naming_it(daemon: RunningDaemon) -> None:
    for kwargs, param, mentions in REFUSED:  # one daemon for all: each case is a request
        with pytest.raises(openai.BadRequestError) as refused:
            complete(daemon, **kwargs)
        error = refused.value.body
        assert isinstance(error, dict) and error["param"] == param, (kwargs, error)
        assert mentions in error["message"], (kwargs, error)
    # Fields at the value that asks for nothing are taken, and a grammar is enforced.
    taken = complete(daemon, prompt=["Is the sea salty? Answer:"], n=1, best_of=1, echo=False,
                     logprobs=0, user="someone", extra_body={"grammar": 'root ::= " yes" | " no"',
                                                             "top_k": 0, "min_p": 0})
    assert taken.choices[0].text in {" yes", " no"}
    assert taken.choices[0].finish_reason == "stop"
