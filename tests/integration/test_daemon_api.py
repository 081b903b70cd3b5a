"""The daemon's API, driven by the official openai SDK and by the project's own client."""

from __future__ import annotations

import os
import stat

import httpx
import openai
import pytest

from assistant.client import Client
from assistant.config import load_settings
from tests.integration.conftest import CHAT_MODEL, EMBED_MODEL, RunningDaemon

pytestmark = pytest.mark.integration


def sdk(daemon: RunningDaemon) -> openai.OpenAI:
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    return openai.OpenAI(base_url="http://assistant/v1", api_key="unused",
                         http_client=httpx.Client(transport=transport))


def test_openai_sdk_non_stream(daemon: RunningDaemon) -> None:
    reply = sdk(daemon).chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=12, temperature=0, seed=1,
    )
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in {"stop", "length"}
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 12


def test_openai_sdk_stream_matches_non_stream_at_temperature_zero(daemon: RunningDaemon) -> None:
    client = sdk(daemon)
    messages = [{"role": "user", "content": "Name three colours."}]
    whole = client.chat.completions.create(model=CHAT_MODEL, messages=messages,  # type: ignore[arg-type]
                                           max_tokens=20, temperature=0)
    # llama.cpp's logits differ slightly when a fully cached prompt is replayed one token at a
    # time rather than decoded as a batch; another prompt in between puts the cache back to a
    # shared prefix, so both requests decode the question as a batch.
    client.chat.completions.create(model=CHAT_MODEL, max_tokens=1,
                                   messages=[{"role": "user", "content": "Something else."}])
    pieces = []
    finish = None
    usage = None
    for chunk in client.chat.completions.create(
        model=CHAT_MODEL, messages=messages, max_tokens=20, temperature=0,  # type: ignore[arg-type]
        stream=True, stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([p for p in pieces if p]) > 1, "the reply should arrive in several pieces"
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish in {"stop", "length"}
    assert usage is not None and usage.completion_tokens > 0


def test_openai_sdk_stop_sequence(daemon: RunningDaemon) -> None:
    reply = sdk(daemon).chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Count from 1 to 10, comma separated."}],
        max_tokens=40, temperature=0, stop=["5"],
    )
    text = reply.choices[0].message.content or ""
    assert "5" not in text
    assert reply.choices[0].finish_reason == "stop"


def test_openai_sdk_penalties_reach_the_sampler(daemon: RunningDaemon) -> None:
    """frequency and presence penalties are honoured, not dropped: at temperature 0 a
    strong penalty changes what a reply asked to repeat itself says."""
    ask = {"model": CHAT_MODEL, "max_tokens": 30, "temperature": 0,
           "messages": [{"role": "user", "content": "Repeat after me: hello hello hello "
                                                    "hello hello hello hello hello"}]}
    plain = sdk(daemon).chat.completions.create(**ask)  # type: ignore[call-overload]
    penalized = sdk(daemon).chat.completions.create(  # type: ignore[call-overload]
        **ask, frequency_penalty=2.0, presence_penalty=2.0)
    assert plain.choices[0].message.content != penalized.choices[0].message.content
    with daemon.http() as http:
        bad = http.post("/v1/chat/completions", json={**ask, "frequency_penalty": 3})
    assert bad.status_code == 400 and "frequency_penalty" in bad.text


def test_openai_sdk_embeddings(daemon: RunningDaemon) -> None:
    result = sdk(daemon).embeddings.create(model=EMBED_MODEL,
                                           input=["a cat", "a kitten", "tax law"])
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [384] * 3
    norm = sum(x * x for x in vectors[0]) ** 0.5
    assert abs(norm - 1) < 1e-3
    close = sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))
    far = sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True))
    assert close > far


def test_openai_sdk_models_lists_installed_and_loaded(daemon: RunningDaemon) -> None:
    client = sdk(daemon)
    before = {m.id: m for m in client.models.list().data}
    assert {"assistant", CHAT_MODEL, EMBED_MODEL} <= set(before)
    client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}],
                                   max_tokens=2)
    after = {m.id: m for m in client.models.list().data}
    assert after[CHAT_MODEL].model_extra and after[CHAT_MODEL].model_extra["loaded"] is True


def test_own_client_streams_typed_events(daemon: RunningDaemon) -> None:
    settings = load_settings(environ=daemon.env)
    with Client(settings) as client:
        events = list(client.stream_turn("Hello there!", max_tokens=10, temperature=0))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "route" and kinds[-1] == "done"
    assert "delta" in kinds
    assert events[-1]["usage"]["completion_tokens"] > 0


def test_socket_is_private(daemon: RunningDaemon) -> None:
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.runtime).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(daemon.runtime / "token").st_mode) == 0o600


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        ({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
         404, "no-such-model"),
        ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
         400, "max_tokens"),
        ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}],
          "max_tokens": 10_000_000}, 400, "max_tokens"),
        ({"model": CHAT_MODEL, "messages": []}, 400, "messages"),
        ({"model": CHAT_MODEL, "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}],
          "temperature": "hot"}, 400, "temperature"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(
    daemon: RunningDaemon, body: dict[str, object], status: int, mentions: str
) -> None:
    with daemon.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    assert mentions in response.json()["error"]["message"]


def test_malformed_json_and_oversized_body(daemon: RunningDaemon) -> None:
    with daemon.http() as http:
        bad = http.post("/v1/chat/completions", content=b"{not json",
                        headers={"content-type": "application/json"})
        assert bad.status_code == 400
        assert "JSON" in bad.json()["error"]["message"]
        huge = http.post("/v1/chat/completions", content=b"x" * (2 * 1024 * 1024),
                         headers={"content-type": "application/json"})
        assert huge.status_code == 413


def test_prompt_longer_than_context(daemon: RunningDaemon) -> None:
    long_text = "word " * 5000  # well past the 2048-token context the fixture sets
    with daemon.http() as http:
        response = http.post("/v1/chat/completions", json={
            "model": CHAT_MODEL, "messages": [{"role": "user", "content": long_text}],
        })
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "context_length_exceeded"
        assert http.get("/health").json()["status"] == "ready"
