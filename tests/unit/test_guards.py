"""Guards that act, through the daemon's API (issue 18): a turn blocked, rewritten, a reply
redacted as it streams or stopped; what is stored and exported; a guard or hook that raises or
runs late is left out with a notice and the turn goes on.

The real app, store, plugins (the bundled guard plugin among them) and router, on the fake
model.
"""

from __future__ import annotations

import asyncio
import json
import time
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from assistant import Filtered, Guard, Turn, Verdict, hookimpl
from assistant.config import load_settings
from assistant.plugins import PluginHost
from assistant.testing import FakeBackend, InProcessDaemon, in_process_daemon

KEY = "sk-" + "Zx9" * 10
CARD = "4111-1111-1111-1111"


def guard_plugin(*guards: Guard, **hooks: Callable[..., Any]) -> object:
    @hookimpl
    def register_guards(register):  # type: ignore[no-untyped-def]
        for guard in guards:
            register(guard)

    return types.SimpleNamespace(register_guards=register_guards, **hooks)


class Shouting(Guard):
    """Rewrites every turn in capitals."""

    name = "shouting"

    def check(self, turn: Turn) -> Verdict:
        return Verdict.rewrite(turn.text.upper(), "said louder", ("case",))


class Broken(Guard):
    name = "broken"

    def check(self, turn: Turn) -> Verdict:
        raise RuntimeError("rule file missing")

    def filter(self, turn: Turn, pending: str, final: bool) -> Filtered:
        raise RuntimeError("filter broke")


class Sleepy(Guard):
    """A sync check that never comes back in time: it would stall the event loop if run on it."""

    name = "sleepy"

    def check(self, turn: Turn) -> Verdict | None:
        time.sleep(3)
        return Verdict.block("too late to matter")


class Dawdler(Guard):
    """An async filter that hangs on its second piece."""

    name = "dawdler"

    async def filter(self, turn: Turn, pending: str, final: bool) -> Filtered:
        if "second" in pending:
            await asyncio.sleep(3600)
        return Filtered(pending)


@pytest.fixture
def env(isolated_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")
    monkeypatch.setenv("ASSISTANT_GUARDS__TOPICS__BLOCKED", '["zebras", "pet rocks"]')
    monkeypatch.setenv("ASSISTANT_PLUGINS__HOOK_TIMEOUT", "0.5")
    monkeypatch.setenv("ASSISTANT_PLUGINS__MAX_FAILURES", "2")


@pytest_asyncio.fixture
async def daemon(env: None) -> AsyncIterator[InProcessDaemon]:
    async with in_process_daemon(load_settings(), FakeBackend()) as d:
        yield d


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


def guards(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "guard"]


async def stored(daemon: InProcessDaemon, conversation_id: str) -> list[dict[str, Any]]:
    async with daemon.http() as http:
        return (await http.get(f"/api/conversations/{conversation_id}")).json()["messages"]


def test_register_guards() -> None:
    host = PluginHost()
    info = host.register(guard_plugin(Shouting()), "loud")
    assert info.status == "loaded" and info.guards == ["shouting"]
    assert host.guards["shouting"].name == "shouting" and host.guard_plugin["shouting"] == "loud"
    twice = host.register(guard_plugin(Shouting()), "loud-again")
    assert twice.status == "failed" and "already registered by plugin 'loud'" in str(twice.error)
    wrong = host.register(guard_plugin(object()), "wrong")  # type: ignore[arg-type]
    assert wrong.status == "failed" and "expects a Guard" in str(wrong.error)


def test_a_guard_that_refuses_its_settings_fails_its_plugin_by_name() -> None:
    import assistant_plugins.guard as bundled

    host = PluginHost()
    host.register(bundled, "guard")
    host.configure_guards({"secrets": {"off": ["cards"]}})
    info = host.plugins["guard"]
    assert info.status == "failed" and host.guards == {}
    assert "[guards.secrets] off: Value error, unknown kind 'cards'" in str(info.error)
    assert any("plugin 'guard' failed to load" in p for p in host.problems())


@pytest.mark.asyncio
async def test_the_guard_plugin_is_bundled_and_on(daemon: InProcessDaemon) -> None:
    async with daemon.http() as http:
        plugins = (await http.get("/api/plugins")).json()["plugins"]
    info = next(p for p in plugins if p["name"] == "guard")
    assert info["bundled"] and info["status"] == "loaded"
    assert info["guards"] == ["secrets", "topics"]


@pytest.mark.asyncio
async def test_a_blocked_turn_is_refused_by_name_stored_and_kept_from_the_model(
        daemon: InProcessDaemon) -> None:
    events = await daemon.events("/api/turns", {"text": "Tell me about Zebras please"})
    assert [e["type"] for e in events] == ["guard", "delta", "done"]
    assert events[0] == {"type": "guard", "guard": "topics", "action": "block",
                         "stage": "input", "kinds": ["zebras"],
                         "reason": "This assistant is set up not to discuss that topic."}
    refusal = text_of(events)
    assert refusal.startswith("Blocked by guard 'topics': ")
    done = events[-1]
    assert done["status"] == "blocked" and done["message_id"] and done["user_message_id"]
    assert daemon.backend.calls == []  # no model saw it

    messages = await stored(daemon, done["conversation_id"])
    user, reply = messages
    assert user["content"] == "Tell me about Zebras please"
    assert reply["content"] == refusal and reply["status"] == "complete"
    assert reply["route"]["method"] == "blocked" and reply["skill"] is None
    assert reply["route"]["guard"][0]["guard"] == "topics"

    # The next turn of the conversation does not carry the refused one to the model.
    await daemon.events("/api/turns", {"text": "hello", "skill": "chat",
                                       "conversation_id": done["conversation_id"]})
    given = " ".join(m.content for m in daemon.backend.calls[-1])
    assert "Zebras" not in given and "Blocked" not in given and "hello" in given


@pytest.mark.asyncio
async def test_secrets_are_redacted_before_the_store_or_a_model_sees_them(
        daemon: InProcessDaemon) -> None:
    events = await daemon.events("/api/turns", {
        "text": f"my key is {KEY} and my card {CARD}", "skill": "chat"})
    rewrite = guards(events)[0]
    assert rewrite["guard"] == "secrets" and rewrite["action"] == "rewrite"
    assert rewrite["kinds"] == ["api_key", "card"]
    assert events[0]["type"] == "guard" and events[1]["type"] == "route"
    # The fake model echoes what it was given: the redacted text, never the secret.
    given = json.dumps([[m.content for m in call] for call in daemon.backend.calls])
    assert KEY not in given and "[redacted:api_key]" in given and "1111-1111" not in given
    assert text_of(events) == "echo: my key is [redacted:api_key] and my card [redacted:card]"

    conversation = events[-1]["conversation_id"]
    messages = await stored(daemon, conversation)
    assert messages[0]["content"] == "my key is [redacted:api_key] and my card [redacted:card]"
    assert messages[1]["route"]["guard"][0]["action"] == "rewrite"
    async with daemon.http() as http:
        exported = [(await http.get(f"/api/conversations/{conversation}/export",
                                    params={"format": fmt})).text for fmt in ("json", "md")]
        everything = (await http.get("/api/export")).text
    for text in [*exported, everything]:
        assert KEY not in text and "1111-1111-1111" not in text and "[redacted:card]" in text


@pytest.mark.asyncio
async def test_a_secret_the_model_writes_is_redacted_mid_stream(env: None) -> None:
    reply = (f"Sure, here it is, as you asked me to write it down: {KEY} is it, and "
             f"{CARD.replace('-', ' ')} is the card, as it was written on the form.")
    backend = FakeBackend([reply])  # streamed a word at a time: the card spans four pieces
    async with in_process_daemon(load_settings(), backend) as daemon:
        events = await daemon.events("/api/turns", {"text": "what is my key?",
                                                    "skill": "chat"})
        deltas = [e["text"] for e in events if e["type"] == "delta"]
        assert len(deltas) > 3 and not any("Zx9" in d or "1111" in d for d in deltas)
        assert "".join(deltas) == ("Sure, here it is, as you asked me to write it down: "
                                   "[redacted:api_key] is it, and [redacted:card] is the "
                                   "card, as it was written on the form.")
        redacted = [g for g in guards(events) if g["action"] == "redact"]
        assert redacted and {k for g in redacted for k in g["kinds"]} == {"api_key", "card"}
        assert all(g["stage"] == "output" for g in redacted)
        messages = await stored(daemon, events[-1]["conversation_id"])
        assert messages[1]["content"] == "".join(deltas) and events[-1]["status"] == "complete"


@pytest.mark.asyncio
async def test_a_reply_that_turns_to_a_blocked_topic_is_stopped(env: None) -> None:
    backend = FakeBackend(["Rocks are nice. My pet rocks are called Ann.",
                           "Rocks are nice. My pet rocks are called Ann."])
    async with in_process_daemon(load_settings(), backend) as daemon:
        events = await daemon.events("/api/turns", {"text": "rocks?", "skill": "chat"})
        stop = guards(events)[-1]
        assert stop["action"] == "stop" and stop["guard"] == "topics"
        assert text_of(events) == "Rocks are nice. My "
        assert events[-1]["status"] == "cancelled"
        messages = await stored(daemon, events[-1]["conversation_id"])
        assert messages[1]["content"] == "Rocks are nice. My "
        assert messages[1]["status"] == "cancelled"
        assert messages[1]["route"]["guard"][-1]["action"] == "stop"
        async with daemon.http() as http:
            answer = (await http.post("/v1/chat/completions", json={
                "model": "assistant", "messages": [{"role": "user", "content": "/chat rocks?"}]},
            )).json()
        assert answer["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.asyncio
async def test_a_blocked_turn_over_v1_is_a_content_filter_refusal(
        daemon: InProcessDaemon) -> None:
    async with daemon.http() as http:
        for stream in (False, True):
            response = await http.post("/v1/chat/completions", json={
                "model": "assistant", "stream": stream,
                "messages": [{"role": "user", "content": "zebras?"}]})
            assert response.status_code == 200
            if stream:
                assert '"finish_reason":"content_filter"' in response.text.replace(" ", "")
                assert "Blocked by guard 'topics'" in response.text
            else:
                choice = response.json()["choices"][0]
                assert choice["finish_reason"] == "content_filter"
                assert choice["message"]["content"].startswith("Blocked by guard 'topics'")
    assert daemon.backend.calls == []


@pytest.mark.asyncio
async def test_a_guard_of_a_plugin_rewrites_a_turn(env: None) -> None:
    plugins = {"loud": guard_plugin(Shouting())}
    async with in_process_daemon(load_settings(), FakeBackend(), plugins=plugins) as daemon:
        events = await daemon.events("/api/turns", {"text": "hello there", "skill": "chat"})
        rewrite = guards(events)[0]
        assert rewrite == {"type": "guard", "guard": "shouting", "action": "rewrite",
                           "stage": "input", "reason": "said louder", "kinds": ["case"]}
        assert text_of(events) == "echo: HELLO THERE"
        messages = await stored(daemon, events[-1]["conversation_id"])
        assert messages[0]["content"] == "HELLO THERE"


@pytest.mark.asyncio
async def test_a_raising_guard_is_left_out_said_and_set_aside(env: None) -> None:
    plugins = {"broken-guard": guard_plugin(Broken())}
    async with in_process_daemon(load_settings(), FakeBackend(), plugins=plugins) as daemon:
        events = await daemon.events("/api/turns", {"text": "hello", "skill": "chat"})
        failed = [g for g in guards(events) if g["action"] == "error"]
        assert [g["stage"] for g in failed] == ["input", "output"]
        assert "RuntimeError: rule file missing" in failed[0]["reason"]
        assert any(e["type"] == "notice" and "filter broke" in e["message"] for e in events)
        assert text_of(events) == "echo: hello" and events[-1]["status"] == "complete"
        # Two failures in a row (max_failures, its check's and its filter's): the guard is
        # no longer called.
        events = await daemon.events("/api/turns", {"text": "hello", "skill": "chat"})
        assert guards(events) == [] and text_of(events) == "echo: hello"
        async with daemon.http() as http:
            info = next(p for p in (await http.get("/api/plugins")).json()["plugins"]
                        if p["name"] == "broken-guard")
            problems = (await http.get("/api/status")).json()["problems"]
        assert info["status"] == "disabled" and info["health"]["hooks"]["hook"].startswith(
            "guard broken")
        assert any("guard broken of plugin 'broken-guard'" in p for p in problems)


@pytest.mark.asyncio
async def test_a_slow_guard_or_hook_cannot_hold_a_turn(env: None) -> None:
    def before_turn(turn: Turn) -> None:
        time.sleep(3)  # sync: on the event loop it would stall every other request too

    plugins = {"sleepy": guard_plugin(Sleepy(), before_turn=hookimpl(before_turn)),
               "dawdler": guard_plugin(Dawdler())}
    backend = FakeBackend(["first second third"])
    async with in_process_daemon(load_settings(), backend, plugins=plugins) as daemon:
        started = time.monotonic()
        turn = asyncio.create_task(daemon.events("/api/turns", {"text": "hi", "skill": "chat"}))
        await asyncio.sleep(0.1)
        async with daemon.http() as http:  # the loop is free while the hooks dawdle
            ticked = time.monotonic()
            assert (await http.get("/health")).status_code == 200
            assert time.monotonic() - ticked < 0.3
        events = await turn
        took = time.monotonic() - started
    assert took < 2.5, took  # three calls of 0.5 s at most, not 3 s + an hour
    late = [g for g in guards(events) if g["action"] == "error"]
    assert [g["guard"] for g in late] == ["sleepy", "dawdler"]
    assert all("took longer than 0.5 s (plugins.hook_timeout)" in g["reason"] for g in late)
    notices = [e["message"] for e in events if e["type"] == "notice"]
    assert any("sleepy" in n and "before_turn" in n and "took longer" in n for n in notices)
    # The dawdler held nothing back: what it was given goes on.
    assert text_of(events) == "first second third" and events[-1]["status"] == "complete"


@pytest.mark.asyncio
async def test_an_after_turn_that_hangs_is_left_behind(env: None) -> None:
    @hookimpl
    async def after_turn(turn: Turn, reply: object) -> None:
        await asyncio.sleep(3600)

    plugins = {"hangs": types.SimpleNamespace(after_turn=after_turn)}
    async with in_process_daemon(load_settings(), FakeBackend(), plugins=plugins) as daemon:
        started = time.monotonic()
        events = await daemon.events("/api/turns", {"text": "hi", "skill": "chat"})
        assert time.monotonic() - started < 2
        assert events[-1]["type"] == "done" and events[-1]["status"] == "complete"
        assert any(e["type"] == "notice" and "'hangs' failed in after_turn: HookTimeout"
                   in e["message"] for e in events)
        messages = await stored(daemon, events[-1]["conversation_id"])
        assert messages[1]["status"] == "complete" and messages[1]["content"] == "echo: hi"
