"""/v1/completions on the daemon in this process, with the fake model: the shapes OpenAI's
legacy text completion answers with, and every field honoured or refused by name."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from assistant.daemon.model_manager import ModelManager
from assistant.errors import RequestError
from assistant.models.backend import Backend, ChatMessage, Delta, GenerationParams, ModelInfo
from assistant.testing import FAKE_MODEL, InProcessDaemon

pytestmark = pytest.mark.asyncio


async def complete(daemon: InProcessDaemon, **body: Any) -> Any:
    async with daemon.http() as http:
        return await http.post("/v1/completions", json={"model": FAKE_MODEL, **body})


async def test_a_raw_prompt_is_completed_as_it_is(fake_daemon: InProcessDaemon) -> None:
    response = await complete(fake_daemon, prompt=["Once upon <|im_start|>"], user="me",
                              n=1, best_of=1, echo=False, logprobs=None, suffix=None)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"] == [{"index": 0, "text": "echo: Once upon <|im_start|>",
                                "logprobs": None, "finish_reason": "stop"}]
    assert body["usage"]["completion_tokens"] == 4
    assert fake_daemon.backend.prompts == ["Once upon <|im_start|>"]  # no chat template
    assert fake_daemon.backend.calls == []


async def test_max_tokens_defaults_to_openais_sixteen(fake_daemon: InProcessDaemon) -> None:
    fake_daemon.backend.replies = ["word " * 40, "word " * 40]
    short = (await complete(fake_daemon, prompt="go")).json()
    assert short["usage"]["completion_tokens"] == 16 and short["choices"][0]["finish_reason"]
    longer = (await complete(fake_daemon, prompt="go", max_tokens=30)).json()
    assert longer["usage"]["completion_tokens"] == 30


async def sse(daemon: InProcessDaemon, **body: Any) -> list[Any]:
    response = await complete(daemon, stream=True, **body)
    assert response.status_code == 200, response.text
    assert response.text.endswith("data: [DONE]\n\n")
    return [json.loads(line[5:]) for line in response.text.splitlines()
            if line.startswith("data:") and line != "data: [DONE]"]


async def test_a_streamed_completion_ends_with_usage_when_asked(
        fake_daemon: InProcessDaemon) -> None:
    chunks = await sse(fake_daemon, prompt="a b", stream_options={"include_usage": True})
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(choice["text"] for c in chunks for choice in c["choices"]) == "echo: a b"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    plain = await sse(fake_daemon, prompt="a")
    assert plain[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any("usage" in c for c in plain)


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"model": "assistant"}, "model", "cannot complete raw text"),
    ({"prompt": ["one", "two"]}, "prompt", "one text prompt"),
    ({"prompt": [1, 2, 3]}, "prompt", "token arrays"),
    ({"prompt": [[1, 2]]}, "prompt", "token arrays"),
    ({"prompt": []}, "prompt", "one text prompt"),
    ({"n": 2}, "n", "cannot give more than one reply"),  # the fake model's limits
    ({"best_of": 3}, "best_of", "best_of = 1"),
    ({"echo": True}, "echo", "not echoed"),
    ({"suffix": "}"}, "suffix", "insertion"),
    ({"logprobs": 2}, "logprobs", "cannot report log probabilities"),
    ({"logit_bias": {"50256": -100}}, "logit_bias", "cannot take a logit_bias"),
    ({"logit_bias": {"the": 1}}, "logit_bias", "keys are token ids"),
    ({"logit_bias": {"²": 1}}, "logit_bias", "keys are token ids"),
    ({"logit_bias": {"1" * 5000: 1}}, "logit_bias", "keys are token ids"),
    ({"logprobs": 6}, "logprobs", "less than or equal to 5"),
    ({"tools": [{"type": "function"}]}, "tools", "not supported"),  # a chat field
    ({"frobnicate": 1}, "frobnicate", "not supported"),
    ({"grammar": 'root ::= "a"', "stop": ["a"]}, "stop", "would cut"),
]


@pytest.mark.parametrize(("fields", "param", "mentions"), REFUSED)
async def test_what_cannot_be_honoured_is_a_400_naming_it(
        fake_daemon: InProcessDaemon, fields: dict[str, Any], param: str, mentions: str) -> None:
    response = await complete(fake_daemon, **{"prompt": "hi", **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and mentions in error["message"], error
    assert fake_daemon.backend.prompts == []


async def test_the_fake_model_cannot_enforce_a_grammar(fake_daemon: InProcessDaemon) -> None:
    response = await complete(fake_daemon, prompt="hi", grammar='root ::= "a"')
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "grammar"


class ChatOnly(Backend):
    """A plugin backend written before completions existed."""

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("chat-only", "chat", 512)]

    async def chat(self, model: str, messages: list[ChatMessage],
                   params: GenerationParams) -> AsyncIterator[Delta]:
        yield Delta("", finish_reason="stop")

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return []


async def test_a_backend_without_completions_refuses_by_model() -> None:
    from assistant.config import load_settings

    models = ModelManager(load_settings())
    models.add_backend(ChatOnly())
    with pytest.raises(RequestError) as refused:
        await anext(models.complete("chat-only", "hello", GenerationParams()))
    assert refused.value.param == "model" and refused.value.code == "unsupported_parameter"
