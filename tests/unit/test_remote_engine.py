"""Remote engines without a peer: their settings, and how each answer of an engine maps to our
errors (httpx's MockTransport stands in for the server; tests/integration/test_remote_engine.py
runs a real one)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.config import EngineSettings, load_settings
from assistant.error_codes import from_http, http_error
from assistant.errors import (
    ConfigError,
    EngineRefusedKey,
    EngineUnavailable,
    ModelNotFound,
    RequestError,
)
from assistant.models.backend import ChatMessage, Delta, GenerationParams
from assistant.models.remote import RemoteEngine


def settings(env: dict[str, str], tmp_path: Path) -> Any:
    return load_settings(environ={"XDG_CONFIG_HOME": str(tmp_path / "none"), **env})


def test_an_engine_is_configured_by_environment_like_every_setting(tmp_path: Path) -> None:
    loaded = settings({"ASSISTANT_ENGINES__GPU__BASE_URL": "http://gpu-box:8000/v1",
                       "ASSISTANT_ENGINES__GPU__API_KEY_ENV": "GPU_API_KEY",
                       "ASSISTANT_ENGINES__GPU__MODELS": '["qwen2.5-7b"]',
                       "ASSISTANT_ENGINES__GPU__MAX_CONCURRENCY": "2"}, tmp_path)
    gpu = loaded.engines["gpu"]
    assert (gpu.base_url, gpu.api_key_env, gpu.models, gpu.timeout, gpu.max_concurrency) == (
        "http://gpu-box:8000/v1", "GPU_API_KEY", ["qwen2.5-7b"], 600.0, 2)
    assert settings({}, tmp_path).engines == {}


@pytest.mark.parametrize(("env", "named"), [
    ({"ASSISTANT_ENGINES__GPU__BASE_URL": "gpu-box:8000"}, "'engines.gpu.base_url'"),
    # A key pasted where its variable's name belongs is refused, never sent.
    ({"ASSISTANT_ENGINES__GPU__BASE_URL": "http://gpu-box/v1",
      "ASSISTANT_ENGINES__GPU__API_KEY_ENV": "sk-abc123"}, "'engines.gpu.api_key_env'"),
    ({"ASSISTANT_ENGINES__GPU__BASE_URL": "http://gpu-box/v1",
      "ASSISTANT_ENGINES__GPU__TIMEOUT": "0"}, "'engines.gpu.timeout'"),
    ({"ASSISTANT_ENGINES__GPU__API_KEY_ENV": "K"}, "'engines.gpu.base_url'"),
    ({"ASSISTANT_ENGINES__GPU__BASE_URL": "http://gpu-box/v1",
      "ASSISTANT_ENGINES__GPU__PORT": "8000"}, "unknown setting 'engines.gpu.port'"),
])
def test_a_bad_engine_setting_is_named(env: dict[str, str], named: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(env, tmp_path)
    assert named in caught.value.message
    assert "environment variable ASSISTANT_ENGINES__GPU__" in caught.value.message


def test_an_engine_name_holds_no_slash(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[engines."a/b"]\nbase_url = "http://x/v1"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"ASSISTANT_CONFIG": str(path)})
    assert f"config error: {path}: 'engines.a/b.[key]' = 'a/b'" in caught.value.message


# -- answers and errors ---------------------------------------------------------------------

def engine(handler: Any, env: dict[str, str] | None = None, **config: Any) -> RemoteEngine:
    return RemoteEngine("gpu", EngineSettings(base_url="http://gpu-box/v1", **config),
                        environ=env or {}, transport=httpx.MockTransport(handler))


def sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


async def reply(e: RemoteEngine, model: str = "gpu/m", **params: Any) -> list[Delta]:
    return [d async for d in e.chat(model, [ChatMessage("user", "hi")],
                                    GenerationParams(**params))]


def test_a_reply_streams_through_with_the_fields_sent_and_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=sse(
            {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
            {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
            {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "length"}]},
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}))

    deltas = asyncio.run(reply(engine(handler, {"K": "s3cret"}, api_key_env="K"),
                               temperature=0, max_tokens=2, seed=3, stop=("\n",)))
    assert [d.text for d in deltas] == ["Hel", "lo", ""]
    end = deltas[-1]
    assert (end.finish_reason, end.prompt_tokens, end.completion_tokens) == ("length", 9, 2)
    request = seen[0]
    assert request.url == "http://gpu-box/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer s3cret"
    body = json.loads(request.content)
    assert body["model"] == "m" and body["stream"] is True
    assert {k: body[k] for k in ("temperature", "max_tokens", "seed", "stop")} == {
        "temperature": 0, "max_tokens": 2, "seed": 3, "stop": ["\n"]}


@pytest.mark.parametrize(("status", "headers", "error", "retry"), [
    (429, {"Retry-After": "7"}, EngineUnavailable, 7),
    (503, {}, EngineUnavailable, 1),  # no Retry-After of theirs: our backoff's
    (401, {}, EngineRefusedKey, None),
    (404, {}, ModelNotFound, None),
    (400, {}, RequestError, None),
])
def test_each_refusal_of_the_engine_is_ours(status: int, headers: dict[str, str],
                                            error: type[Exception], retry: int | None) -> None:
    body = {"error": {"message": "nope", "code": "bad_thing", "param": "top_k"}}
    e = engine(lambda r: httpx.Response(status, json=body, headers=headers),
               {"GPU_KEY": "wrong"}, api_key_env="GPU_KEY")
    with pytest.raises(error) as caught:
        asyncio.run(reply(e))
    exc = caught.value
    assert "engine 'gpu'" in str(exc) and "nope" in str(exc)
    answered_status, answered, answered_headers = http_error(exc)
    if retry is not None:
        assert (answered_status, answered["error"]["code"]) == (503, "engine_unavailable")
        assert answered_headers["Retry-After"] == str(retry)
        assert e.state == "down"
        read_back = from_http(answered_status, answered,
                              {k.lower(): v for k, v in answered_headers.items()})
        assert isinstance(read_back, EngineUnavailable) and read_back.retry_after == retry
    if error is EngineRefusedKey:
        assert "GPU_KEY" in str(exc) and e.state == "key_refused"
        assert answered["error"]["code"] == "engine_key_refused"
    if error is RequestError:  # what the engine refuses of a request is the caller's 400
        assert (answered_status, answered["error"]["param"]) == (400, "top_k")
        assert e.state == "up"


def test_a_key_variable_that_is_not_set_is_named_before_anything_is_sent() -> None:
    sent: list[httpx.Request] = []
    e = engine(lambda r: sent.append(r) or httpx.Response(200), {}, api_key_env="GPU_KEY")
    with pytest.raises(EngineRefusedKey) as caught:
        asyncio.run(reply(e))
    assert "GPU_KEY" in caught.value.message and "not set" in caught.value.message
    assert "Set GPU_KEY" in (caught.value.hint or "")
    assert sent == []


def test_an_unreachable_engine_is_named_and_backs_off() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    e = engine(refuse)
    retries = []
    for _ in range(3):
        with pytest.raises(EngineUnavailable) as caught:
            asyncio.run(reply(e))
        retries.append(caught.value.retry_after)
    assert "engine 'gpu' cannot be reached (http://gpu-box/v1)" in caught.value.message
    assert retries == [1, 2, 4] and e.failures == 3
    assert (e.state, e.problem()) == ("down", caught.value.message + "; asked again in 4 s")


def test_a_stream_cut_short_is_an_error_not_a_short_reply() -> None:
    # llama-cpp-python's server sends a bare [DONE] when another request interrupts one.
    e = engine(lambda r: httpx.Response(200, content=sse(
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]})))

    async def run() -> list[str]:
        got = []
        with pytest.raises(EngineUnavailable, match="without finishing it"):
            async for d in e.chat("gpu/m", [ChatMessage("user", "hi")], GenerationParams()):
                got.append(d.text)
        return got

    assert asyncio.run(run()) == ["Hel"]


def test_closing_our_stream_closes_theirs() -> None:
    closed = asyncio.Event()

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            yield b'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\n'
            await asyncio.sleep(60)  # a reply that goes on
            yield b""

        async def aclose(self) -> None:
            closed.set()

    async def run() -> None:
        e = engine(lambda r: httpx.Response(200, stream=Body()))
        stream = e.chat("gpu/m", [ChatMessage("user", "hi")], GenerationParams())
        assert (await anext(stream)).text == "a"
        await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(closed.wait(), 1)

    asyncio.run(run())


# -- cache_prompt and token counting --------------------------------------------------------

def listing(owned_by: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": owned_by}]}


@pytest.mark.parametrize(("owned_by", "setting", "sent"), [
    ("llamacpp", "auto", True),  # llama.cpp's server: asked to keep its prompt cache
    ("vllm", "auto", False),  # another server is not sent a field it may refuse
    ("vllm", True, True),
    ("llamacpp", False, False),
])
def test_cache_prompt_goes_to_llama_cpps_server_or_as_set(owned_by: str, setting: Any,
                                                           sent: bool) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=listing(owned_by))
        bodies.append(json.loads(request.content))
        return httpx.Response(200, content=sse(
            {"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]}))

    async def run() -> RemoteEngine:
        e = engine(handler, cache_prompt=setting)
        await e.refresh()
        await reply(e)
        return e

    e = asyncio.run(run())
    assert ("cache_prompt" in bodies[0]) is sent and bodies[0].get("cache_prompt", True) is True
    assert e.status()["cache_prompt"] is sent


def counting(routes: dict[str, Any]) -> tuple[RemoteEngine, list[str]]:
    """An engine whose server answers ``routes`` (path -> status or JSON body), 404 else."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        answer = routes.get(request.url.path, 404)
        if isinstance(answer, int):
            return httpx.Response(answer, json={"detail": "no"})
        return httpx.Response(200, json=answer(json.loads(request.content)))

    return engine(handler), asked


MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "héllo there")]


def test_tokens_are_counted_by_llama_cpps_tokenize_route_once_found() -> None:
    e, asked = counting({"/tokenize": lambda b: {"tokens": list(range(len(b["content"])))}})

    async def run() -> list[int]:
        return [await e.count_tokens("gpu/m", MESSAGES) for _ in range(2)]

    text = "system\nBe brief.\nuser\nhéllo there\n"
    assert asyncio.run(run()) == [len(text) + 3 * 2 + 3] * 2
    assert asked == ["/tokenize", "/tokenize"]
    assert e.status()["tokenizer"] == "/tokenize"


def test_llama_cpp_pythons_extras_route_is_found_after_a_404() -> None:
    e, asked = counting({"/extras/tokenize": lambda b: {"tokens": [1] * len(b["input"])}})

    async def run() -> list[int]:
        return [await e.count_tokens("gpu/m", MESSAGES) for _ in range(2)]

    assert asyncio.run(run())[1] == len("system\nBe brief.\nuser\nhéllo there\n") + 9
    assert asked == ["/tokenize", "/extras/tokenize", "/extras/tokenize"]
    assert e.status()["tokenizer"] == "/extras/tokenize"


def test_without_a_tokenizer_the_count_is_an_upper_bound_and_not_asked_again() -> None:
    e, asked = counting({})

    async def run() -> list[int]:
        return [await e.count_tokens("gpu/m", MESSAGES) for _ in range(3)]

    counts = asyncio.run(run())
    assert asked == ["/tokenize", "/extras/tokenize"]  # the missing routes: asked once
    # Never under the truth: a byte counts as half a token.
    assert counts[0] == (9 // 2 + 8) + (12 // 2 + 8) + 3 == counts[2]
    assert e.status()["tokenizer"] == "estimate"


def test_a_tokenizer_failing_for_now_is_asked_again() -> None:
    e, asked = counting({"/tokenize": 503})

    async def run() -> None:
        await e.count_tokens("gpu/m", MESSAGES)
        await e.count_tokens("gpu/m", MESSAGES)

    asyncio.run(run())
    assert asked == ["/tokenize", "/tokenize"] and e.status()["tokenizer"] is None
    assert e.state == "unknown"  # counting says nothing of the engine's health


def test_a_caller_waiting_for_the_whole_reply_asks_the_engine_for_it_unstreamed() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={
            "choices": [{"index": 1, "message": {"content": "Bye"}, "finish_reason": "stop"},
                        {"index": 0, "message": {"content": "Hello"},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4}})

    deltas = asyncio.run(reply(engine(handler), streamed=False, n=2))
    assert "stream" not in bodies[0] and bodies[0]["n"] == 2
    assert [(d.index, d.text, d.finish_reason) for d in deltas] == [
        (0, "Hello", None), (1, "Bye", None), (0, "", "length"), (1, "", "stop")]
    assert (deltas[2].prompt_tokens, deltas[2].completion_tokens) == (9, 4)
