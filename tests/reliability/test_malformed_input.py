"""Malformed input gets a 400 that names the line or field, never a 500 (issue 21, item 8).

Each case below answered 500 (an unhandled RecursionError, OverflowError, ValueError, TypeError
or UnicodeEncodeError, or a storage error) or was stored as garbage before this test's commit:
``'[' * 100000``, prompt_tokens 10**30, a year-1 time at +14:00, ChatGPT ``children: [{}]``,
``create_time`` 1e20 / NaN, lone surrogates. A lone surrogate in chat content reached the
store (500) or the model host (503 ``model_unavailable``); it is now a 400 naming the field on
every route. Before start-up has opened the store, history routes answer 503 with Retry-After.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.store.exchange import FORMAT_NAME, MAX_DEPTH
from assistant.testing import InProcessDaemon

TIME = "2024-01-01T00:00:00+00:00"


def ours(message: dict[str, Any] | None = None, **conversation: Any) -> str:
    m = {"id": "m1", "parent_id": None, "role": "user", "content": "hi", "status": "complete",
         "created": TIME, "prompt_tokens": 0, "completion_tokens": 0, **(message or {})}
    c = {"id": "c1", "title": "t", "created": TIME, "updated": TIME, "archived": False,
         "pinned": False, "messages": [m], **conversation}
    return json.dumps({"format": FORMAT_NAME, "version": 1, "conversations": [c]})


def chatgpt(node: dict[str, Any] | None = None, **conversation: Any) -> str:
    user = {"parent": "top", "children": [], "message": {
        "author": {"role": "user"}, "content": {"parts": ["hello"]}, **(node or {})}}
    c = {"id": "g1", "title": "x", "mapping": {
        "top": {"parent": None, "children": ["u"], "message": None}, "u": user},
        **conversation}
    return json.dumps([c])


def nested(levels: int) -> Any:
    return json.loads("[" * levels + "]" * levels)


def escaped(text: str, plain: str, escape: str) -> str:
    """``text`` with the JSON string ``plain`` replaced by one holding ``escape`` raw."""
    assert f'"{plain}"' in text
    return text.replace(f'"{plain}"', f'"{escape}"')


# (body, what the 400's message must name)
CASES: dict[str, tuple[str, str]] = {
    "deep array": ("[" * 100_000, "nested too deeply"),
    "deep object": ('{"a":' * 100_000, "nested too deeply"),
    "nested past the limit": (
        ours(message={"route": {"x": nested(MAX_DEPTH)}}),
        "conversations[0].messages[0].route"),
    "prompt_tokens 10**30": (ours(message={"prompt_tokens": 10**30}),
                             "conversations[0].messages[0].prompt_tokens"),
    "a 5,000-digit number": (ours().replace('"prompt_tokens": 0', '"prompt_tokens": ' + "9" * 5000),
                             "more than 4,300 digits"),
    "year 1 at +14:00": (ours(message={"created": "0001-01-01T00:00:00+14:00"}),
                         "conversations[0].messages[0].created"),
    "year 9999 at -14:00": (ours(updated="9999-12-31T23:59:59-14:00"),
                            "conversations[0].updated"),
    "NaN in timings": (ours(message={"timings": {"total": float("nan")}}),
                       "conversations[0].messages[0].timings.total"),
    "Infinity in settings": (ours(settings={"temperature": float("inf")}),
                             "conversations[0].settings.temperature"),
    "lone surrogate in content": (escaped(ours(message={"content": "@"}), "@", "\\ud800"),
                                  "conversations[0].messages[0].content"),
    "lone surrogate in a title": (escaped(ours(title="@"), "@", "\\udfff"),
                                  "conversations[0].title"),
    "lone surrogate in a key": (escaped(ours(settings={"@": 1}), "@", "a\\ud800"),
                                "conversations[0].settings.a"),
    "ChatGPT children [{}]": (chatgpt().replace('"children": ["u"]', '"children": [{}]'),
                              "[0].mapping.top.children[0]"),
    "ChatGPT create_time 1e20": (chatgpt(create_time=1e20), "[0].create_time"),
    "ChatGPT create_time NaN": (chatgpt(create_time=float("nan")), "[0].create_time"),
    "ChatGPT message create_time -1e300": (chatgpt(node={"create_time": -1e300}),
                                           "[0].mapping.u.message.create_time"),
    "ChatGPT lone surrogate": (escaped(chatgpt(), "hello", "\\ud83d!"),
                               "[0].mapping.u.message.content.parts[0]"),
    "ChatGPT model_slug a list": (chatgpt(node={"author": {"role": "assistant"},
                                                "metadata": {"model_slug": ["x"]}}),
                                  "[0].mapping.u.message.metadata.model_slug"),
    "ChatGPT title an object": (chatgpt(title={"a": 1}), "[0].title"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(CASES))
async def test_a_malformed_import_is_a_400_naming_the_field(
    fake_daemon: InProcessDaemon, case: str,
) -> None:
    body, named = CASES[case]
    async with fake_daemon.http(timeout=60) as http:
        response = await http.post("/api/import", content=body.encode("utf-8"))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_import"
        assert named in error["message"] and "Nothing was imported" in error["message"]
        listed = await http.get("/api/conversations", params={"archived": "all"})
        assert listed.json()["conversations"] == []


@pytest.mark.asyncio
async def test_a_well_formed_import_at_the_limits_is_stored_and_reads_back(
    fake_daemon: InProcessDaemon,
) -> None:
    """The checks refuse only what is wrong: the extremes that fit are kept exactly."""
    body = ours(message={"prompt_tokens": 2**63 - 1, "created": "0001-01-02T00:00:00+00:00",
                         "content": "astral \U0001f600 and CJK 中文",
                         "route": {"x": nested(MAX_DEPTH - 6)}})  # the deepest allowed
    async with fake_daemon.http(timeout=60) as http:
        response = await http.post("/api/import", content=body.encode("utf-8"))
        assert response.status_code == 200, response.text
        message = (await http.get("/api/conversations/c1")).json()["messages"][0]
    assert message["prompt_tokens"] == 2**63 - 1
    assert message["created"] == "0001-01-02T00:00:00.000000Z"
    assert message["content"] == "astral \U0001f600 and CJK 中文"


def test_the_cli_import_reports_the_field_without_a_traceback(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from assistant.cli import main

    path = tmp_path / "conversations.json"
    path.write_text(chatgpt(create_time=1e20))
    result = CliRunner().invoke(main, ["history", "import", str(path)])
    assert result.exit_code == 1
    assert "error: Import failed: [0].create_time is 1e+20" in result.stderr
    assert "Traceback" not in result.output


SURROGATE = "a \\ud800 b"  # as the JSON text has it: a lone high surrogate
CHAT = [{"role": "user", "content": "@"}]
SURROGATE_ROUTES = [
    ("/v1/chat/completions", {"model": "fake", "messages": CHAT}, "messages[0].content"),
    ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "stream": True},
     "messages[0].content"),
    ("/v1/chat/completions", {"model": "assistant", "messages": CHAT}, "messages[0].content"),
    ("/v1/completions", {"model": "fake", "prompt": "@"}, "prompt"),
    ("/v1/embeddings", {"model": "fake-embed", "input": ["ok", "@"]}, "input[1]"),
    ("/api/turns", {"text": "@"}, "text"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "body", "field"), SURROGATE_ROUTES)
async def test_a_lone_surrogate_in_a_request_is_a_400_naming_the_field(
    fake_daemon: InProcessDaemon, path: str, body: dict[str, Any], field: str,
) -> None:
    raw = escaped(json.dumps(body), "@", SURROGATE)
    async with fake_daemon.http(timeout=60) as http:
        response = await http.post(path, content=raw,
                                   headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == field and "surrogate" in error["message"], error
        # Nothing was stored: no conversation was begun with it.
        assert (await http.get("/api/conversations")).json()["conversations"] == []


@pytest.mark.asyncio
async def test_a_lone_surrogate_in_a_new_title_is_a_400(fake_daemon: InProcessDaemon) -> None:
    async with fake_daemon.http(timeout=60) as http:
        await http.post("/api/import", content=ours().encode())
        response = await http.patch("/api/conversations/c1", content='{"title": "\\udc00"}',
                                    headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json()["error"]["param"] == "title"
        assert (await http.get("/api/conversations/c1")).json()["title"] == "t"


@pytest.mark.asyncio
async def test_history_routes_answer_503_until_the_store_is_open() -> None:
    """The app as it is served between binding the socket and start-up opening the store."""
    from assistant.config import load_settings
    from assistant.daemon.api import build_app, with_middleware
    from assistant.daemon.server import build
    from assistant.plugins import PluginHost

    settings = load_settings()
    services = build(settings, PluginHost(settings.plugins))
    app = with_middleware(build_app(services), services)

    async def unix_peer(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "server": ("/tmp/assistant.sock", None)}, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=unix_peer),
                                 base_url="http://assistant") as http:
        for method, path in [("GET", "/api/conversations"), ("GET", "/api/search?q=x"),
                             ("GET", "/api/export"), ("GET", "/api/conversations/c1"),
                             ("GET", "/api/messages/m1"), ("POST", "/api/import"),
                             ("PATCH", "/api/conversations/c1")]:
            response = await http.request(method, path, json={} if method != "GET" else None)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["code"] == "storage_unavailable"
            assert response.headers["retry-after"] == "5"
    await services.models.host.stop()
