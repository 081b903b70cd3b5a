"""Whose failure counts, through the daemon's API: the caller's and the model host's never do; a
skill that keeps failing is set aside alone, turns meant for it go to chat with a notice, and
the daemon says so (``/api/plugins``, ``/api/status``, ``/api/skills``) until it is re-armed.

The real app, store, plugins and router on the fake model (issues 18, 20 and 21).
"""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from assistant import hookimpl
from assistant.config import load_settings
from assistant.daemon.turns import TurnRequest
from assistant.errors import HostStopped, RequestError
from assistant.models.backend import ChatMessage, Delta, GenerationParams
from assistant.skills import DeltaEvent, Event, Skill, SkillContext, Turn
from assistant.testing import FakeBackend, InProcessDaemon, in_process_daemon

pytestmark = pytest.mark.asyncio

LONG = "word " * 400


class Failing(FakeBackend):
    """The fake model refusing a prompt past 1,000 characters, as llama.cpp's host does, and
    stopping like a killed model host when told to."""

    host_down = False
    remote_down = False  # a remote engine's backend: its own ConnectionError
    slow = False  # a long queue: the model answers after an hour

    async def chat(self, model: str, messages: list[ChatMessage], params: GenerationParams,
                   ) -> AsyncIterator[Delta]:
        if self.host_down:
            raise HostStopped(f"the model host stopped while running {model!r}; it is "
                              "restarting", "Try the request again.")
        if self.remote_down:
            raise ConnectionError("[Errno 111] Connection refused")
        if self.slow:
            await asyncio.sleep(3600)
        if params.grammar is not None:
            raise RequestError("grammar: this model takes no grammar",
                               code="unsupported_parameter", param="grammar")
        if sum(len(m.content) for m in messages) > 1000:
            raise RequestError(f"the prompt is 2,000 tokens, beyond the context of 1,024 "
                               f"(model {model!r})", code="context_length_exceeded",
                               param="messages")
        async for delta in super().chat(model, messages, params):
            yield delta


class Units(Skill):
    """A deterministic skill with a bug."""

    name = "units"
    description = "convert units"
    examples = ("convert 5 miles to km", "how many grams in a pound", "convert 3 feet to m")

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        raise RuntimeError("conversion table missing")
        yield DeltaEvent("")


class Shout(Skill):
    """The same plugin's other skill, which works."""

    name = "shout"
    examples = ("shout this please",)

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        yield DeltaEvent(turn.text.upper())


class Slow(Skill):
    name = "slow"

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        yield DeltaEvent("partial")
        await asyncio.sleep(3600)


class Stuffer(Skill):
    """A skill that pads a short request past the context by itself."""

    name = "stuffer"
    examples = ("stuff it",)

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        async for piece in ctx.generate([ChatMessage("user", LONG + turn.text)]):
            yield DeltaEvent(piece)


class Grammarian(Skill):
    """A skill that asks the model for something it refuses, the caller never asked."""

    name = "grammarian"
    examples = ("parse this",)

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        async for piece in ctx.generate([ChatMessage("user", turn.text)],
                                        GenerationParams(grammar='root ::= "x"')):
            yield DeltaEvent(piece)


def plugin(*skills: Skill, **hooks: Callable[..., Any]) -> object:
    @hookimpl
    def register_skills(register):  # type: ignore[no-untyped-def]
        for skill in skills:
            register(skill)

    return types.SimpleNamespace(register_skills=register_skills, **hooks)


@pytest.fixture
def env(isolated_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")
    monkeypatch.setenv("ASSISTANT_PLUGINS__MAX_FAILURES", "3")


@pytest_asyncio.fixture
async def daemon(env: None) -> AsyncIterator[InProcessDaemon]:
    plugins = {"units-plugin": plugin(Units(), Shout()),
               "buggy-prompts": plugin(Stuffer(), Grammarian())}
    async with in_process_daemon(load_settings(), Failing(), plugins=plugins) as d:
        yield d


def last(events: list[dict[str, Any]]) -> dict[str, Any]:
    return events[-1]


# -- issue 21, item 1: the caller's own errors ---------------------------------------------

async def test_over_long_turns_are_the_callers_400s_and_never_disable_chat(
        daemon: InProcessDaemon) -> None:
    for _ in range(5):
        events = await daemon.events("/api/turns", {"text": "/chat " + LONG})
        error = last(events)
        assert error["type"] == "error" and error["code"] == "context_length_exceeded"
        assert error["status"] == 400 and error["param"] == "messages"
        assert "failed" not in error["message"]
    async with daemon.http() as http:
        for _ in range(5):
            response = await http.post("/v1/chat/completions", json={
                "model": "assistant", "messages": [{"role": "user", "content": "/chat " + LONG}]})
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "context_length_exceeded"
        skills = (await http.get("/api/skills")).json()["skills"]
        status = (await http.get("/api/status")).json()
        ok = await http.post("/v1/chat/completions", json={
            "model": "assistant", "messages": [{"role": "user", "content": "/chat hello"}]})
    assert {s["name"]: s["state"] for s in skills}["chat"] == "available"
    assert status["problems"] == [] and daemon.services.plugins.breaker("chat").failures == 0
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "echo: hello"


# -- issue 18 and remote engines: a model that is down ------------------------------------

@pytest.mark.parametrize(("down", "says", "never_says", "retry_after", "backend_failures"), [
    # The model host crashed: it restarts, so retry at once; no plugin is to blame.
    ("host_down", ("host stopped",), ("failed",), 1, 0),
    # A remote engine's backend: its own ConnectionError, counted against its plugin (five
    # turns and the /v1 request), never against a skill.
    ("remote_down", ("ConnectionError", "fake-model"), (), 5, 6),
], ids=["host_down", "remote_down"])
async def test_a_model_that_is_down_is_a_503_and_never_a_skills_failure(
        daemon: InProcessDaemon, down: str, says: tuple[str, ...], never_says: tuple[str, ...],
        retry_after: int, backend_failures: int) -> None:
    assert isinstance(daemon.backend, Failing)
    setattr(daemon.backend, down, True)
    for _ in range(5):
        error = last(await daemon.events("/api/turns", {"text": "/chat hi"}))
        assert error["code"] == "model_unavailable" and error["status"] == 503
        assert all(s in error["message"] for s in says), error
        assert not any(s in error["message"] for s in never_says), error
        assert error["retry_after"] == retry_after
    async with daemon.http() as http:
        response = await http.post("/v1/chat/completions", json={
            "model": "assistant", "messages": [{"role": "user", "content": "/chat hi"}]})
        listed = (await http.get("/api/plugins")).json()["plugins"]
        setattr(daemon.backend, down, False)  # the host restarted, the engine came back
        ok = await http.post("/v1/chat/completions", json={
            "model": "assistant", "messages": [{"role": "user", "content": "/chat hi"}]})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"
    assert response.headers["retry-after"] == str(retry_after)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert daemon.services.plugins.breaker("chat").state == "available"
    assert daemon.services.plugins.breaker("chat").failures == 0
    models = next(p for p in listed if p["name"] == "fake-model")["health"].get("models", {})
    assert models.get("failures", 0) == backend_failures
    if backend_failures:
        assert "ConnectionError" in models["traceback"]


# -- issue 20: a failing skill is visible, set aside alone, and re-armed -------------------

async def test_a_failing_skill_is_set_aside_alone_shown_and_re_armed(
        daemon: InProcessDaemon, caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(3):
        error = last(await daemon.events("/api/turns", {"text": "@units 5 miles in km"}))
        assert error["code"] == "skill_failed" and error["status"] == 500
        assert "RuntimeError: conversion table missing" in error["message"]
    logged = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert logged and "units" in logged[0].getMessage() and "units-plugin" in logged[0].getMessage()

    events = await daemon.events("/api/turns", {"text": "@units 5 miles in km"})
    route, notices = events[0], [e for e in events if e["type"] == "notice"]
    assert route["skill"] == "chat" and route["method"] == "fallback"
    assert route["runner_up"] == "units" and "disabled after 3 failures" in route["explanation"]
    assert any("units" in n["message"] and "chat answers instead" in n["message"]
               for n in notices)
    assert last(events)["status"] == "complete"
    shout = await daemon.events("/api/turns", {"text": "@shout hey"})
    assert "".join(e["text"] for e in shout if e["type"] == "delta") == "HEY"

    async with daemon.http() as http:
        listed = (await http.get("/api/plugins")).json()
        status = (await http.get("/api/status")).json()
        skills = (await http.get("/api/skills")).json()["skills"]
        enabled = await http.post("/api/plugins/units/enable")
        unknown = await http.post("/api/plugins/nope/enable")
        after = (await http.get("/api/status")).json()
    info = next(p for p in listed["plugins"] if p["name"] == "units-plugin")
    assert info["health"]["units"]["state"] == "disabled"
    assert info["health"]["units"]["failures"] == 3
    assert "RuntimeError: conversion table missing" in info["health"]["units"]["traceback"]
    assert info["health"]["shout"]["state"] == "available"
    assert status["status"] == "degraded"
    assert any("skill 'units'" in p and "plugins enable units" in p for p in status["problems"])
    assert {s["name"]: s["state"] for s in skills}["units"] == "disabled"
    assert enabled.status_code == 200 and enabled.json()["enabled"] == ["units"]
    assert unknown.status_code == 404 and "units" in unknown.json()["error"]["message"]
    assert after["problems"] == [] and after["status"] == "ready"
    again = await daemon.events("/api/turns", {"text": "@units 5 miles in km"})
    assert again[0]["skill"] == "units" and last(again)["code"] == "skill_failed"


async def test_an_unknown_command_is_an_error_naming_the_skills(daemon: InProcessDaemon) -> None:
    async with daemon.http() as http:
        response = await http.post("/api/turns", json={"text": "/unitz 5 miles in km"})
        openai = await http.post("/v1/chat/completions", json={
            "model": "assistant", "messages": [{"role": "user", "content": "/unitz 5 mi"}]})
        listed = (await http.get("/api/conversations")).json()["conversations"]
    assert response.status_code == 400 and openai.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_skill" and "'unitz'" in error["message"]
    assert "did you mean 'units'?" in error["message"] and "chat" in error["message"]
    assert error["param"] == "text"
    assert openai.json()["error"]["param"] == "messages"
    assert openai.json()["error"]["message"].startswith("messages: ")
    assert listed == []  # refused before anything was stored


async def test_an_unknown_at_skill_is_an_error_naming_the_skills(daemon: InProcessDaemon) -> None:
    async with daemon.http() as http:
        response = await http.post("/api/turns", json={"text": "@alice thanks for the review"})
        quoted = await http.post("/api/turns", json={"text": "Re @alice thanks for the review"})
        listed = (await http.get("/api/conversations")).json()["conversations"]
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_skill" and error["param"] == "text"
    assert "no skill named 'alice' (the message starts with @alice)" in error["message"]
    assert "available: " in error["message"] and "units" in error["message"]
    assert quoted.status_code == 200  # words before the @ send it as text
    assert len(listed) == 1  # only the quoted turn was stored


# -- the breaker's edges: waits for the model, the last resort ------------------------------

async def test_a_timeout_while_waiting_for_the_model_never_counts(
        env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_PLUGINS__SKILL_TIMEOUT", "0.2")
    backend = Failing()
    backend.slow = True
    async with in_process_daemon(load_settings(), backend) as daemon:
        for _ in range(4):
            events = await daemon.events("/api/turns", {"text": "/chat hi"})
            assert last(events)["status"] == "cancelled"
            assert any("waiting for the model" in e["message"]
                       for e in events if e["type"] == "notice")
        assert daemon.services.plugins.breaker("chat").failures == 0
        backend.slow = False
        ok = await daemon.events("/api/turns", {"text": "/chat hi"})
    assert last(ok)["status"] == "complete"


async def test_a_disabled_chat_still_answers_as_the_last_resort(daemon: InProcessDaemon) -> None:
    plugins = daemon.services.plugins

    def trip() -> None:
        for skill in ("chat", "units"):
            while plugins.breaker(skill).allows():
                plugins.breaker(skill).failed("RuntimeError: boom")

    trip()
    chat = await daemon.events("/api/turns", {"text": "/chat hi"})
    assert plugins.breaker("chat").allows()  # its answer re-armed it
    trip()
    units = await daemon.events("/api/turns", {"text": "@units 5 mi"})
    trip()
    async with daemon.http() as http:
        openai = await http.post("/v1/chat/completions", json={
            "model": "assistant", "messages": [{"role": "user", "content": "/chat hi"}]})
    for events in (chat, units):
        assert last(events)["status"] == "complete" and events[0]["skill"] == "chat"
        assert any("last resort" in e["message"] for e in events if e["type"] == "notice")
    assert openai.status_code == 200
    assert "last resort" in openai.headers["x-assistant-notice"]


async def test_a_skills_own_refused_model_call_is_the_skills_failure(
        daemon: InProcessDaemon) -> None:
    for skill in ("stuffer", "grammarian"):
        error = last(await daemon.events("/api/turns", {"text": f"@{skill} go"}))
        assert error["status"] == 500 and error["code"] == "skill_failed", error
        assert "the model refused the skill's request" in error["message"]
        assert daemon.services.plugins.breaker(skill).failures == 1


async def test_the_fallback_notice_reaches_v1_as_a_header(daemon: InProcessDaemon) -> None:
    for _ in range(3):
        daemon.services.plugins.breaker("units").failed("RuntimeError: boom")
    body = {"model": "assistant", "messages": [{"role": "user", "content": "@units 5 mi"}]}
    async with daemon.http() as http:
        whole = await http.post("/v1/chat/completions", json=body)
        streamed = await http.post("/v1/chat/completions", json={**body, "stream": True})
    for response in (whole, streamed):
        assert response.status_code == 200
        notice = response.headers["x-assistant-notice"]
        assert "skill 'units' is disabled" in notice and "chat answers instead" in notice
        assert notice.isascii() and "\n" not in notice


async def test_after_turn_runs_once_when_a_real_client_disconnects(env: None) -> None:
    """Through Starlette as uvicorn's h11 drives it (ASGI spec 2.3): the response's task group
    is cancelled when ``http.disconnect`` arrives, and anyio keeps cancelling it."""
    seen: list[str] = []

    @hookimpl
    def before_turn(turn):  # type: ignore[no-untyped-def]
        seen.append("before")

    @hookimpl
    async def after_turn(turn, reply):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        seen.append(f"after {reply.status}")

    plugins = {"slow": plugin(Slow(), before_turn=before_turn, after_turn=after_turn)}
    async with in_process_daemon(load_settings(), plugins=plugins) as daemon:
        body = json.dumps({"text": "go", "skill": "slow"}).encode()
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/api/turns", "raw_path": b"/api/turns", "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 5000),
                 "server": ("/tmp/assistant.sock", None),
                 "headers": [(b"host", b"assistant"), (b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}
        streamed = asyncio.Event()
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": body, "more_body": False}
            await streamed.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if b"event: delta" in message.get("body", b""):
                streamed.set()

        await asyncio.wait_for(daemon.asgi(scope, receive, send), 10)
        assert seen == ["before", "after cancelled"]


async def test_after_turn_runs_once_when_the_client_goes_away(env: None) -> None:
    seen: list[str] = []

    @hookimpl
    def before_turn(turn):  # type: ignore[no-untyped-def]
        seen.append("before")

    @hookimpl
    def after_turn(turn, reply):  # type: ignore[no-untyped-def]
        seen.append(f"after {reply.status}")

    plugins = {"slow": plugin(Slow(), before_turn=before_turn, after_turn=after_turn)}
    async with in_process_daemon(load_settings(), plugins=plugins) as daemon:
        turns = daemon.services.turns
        assert turns is not None
        events = turns.run(TurnRequest("go", skill="slow"))
        async for event in events:
            if event["type"] == "delta":
                break
        await events.aclose()  # what the SSE response does when the client disconnects
        assert seen == ["before", "after cancelled"]
        done = [e async for e in turns.run(TurnRequest("go", skill="chat"))]
    assert done[-1]["status"] == "complete"
    assert seen == ["before", "after cancelled", "before", "after complete"]
