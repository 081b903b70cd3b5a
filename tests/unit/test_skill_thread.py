"""A plugin's skill runs on a thread and event loop of its own (``Skill.own_loop``): a blocking
``time.sleep`` in it stalls no other client, the skill timeout still fires, and its ``ctx``
calls reach the daemon's loop. The daemon's own skills stay on the daemon's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from assistant import ChatMessage, DeltaEvent, Event, Skill, SkillContext, Turn, hookimpl
from assistant.config import load_settings
from assistant.skills import Done, Notice, Progress, execute
from assistant.testing import FakeBackend, fake_context, in_process_daemon, run_skill_text

pytestmark = pytest.mark.asyncio


class Sleepy(Skill):
    name = "sleepy"
    examples = ("take a nap",)

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        time.sleep(2.0)  # blocking, as a careless plugin would
        yield DeltaEvent("awake")


class Busy(Skill):
    """Uses every call that crosses to the daemon's loop, and says which thread it ran on."""

    name = "busy"
    examples = ("keep busy",)

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        ctx.progress(1, 2, "thinking")
        pieces = [p async for p in ctx.generate([ChatMessage("user", turn.text)])]
        vectors = await ctx.embed(["a", "b"])
        tokens = await ctx.count_tokens([ChatMessage("user", "hello")])
        yield DeltaEvent(f"{''.join(pieces)}|{len(vectors)}|{tokens > 0}|"
                         f"{threading.get_ident()}")


class OnLoop(Busy):
    name = "on_loop"
    own_loop = False


class Plugin:
    @hookimpl
    def register_skills(self, register: Any) -> None:
        register(Sleepy())
        register(Busy())


async def test_a_blocking_skill_is_cut_by_the_timeout_while_the_loop_runs() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.05)

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    events = [e async for e in execute(Sleepy(), Turn("now"), fake_context(), timeout=0.5)]
    took = time.monotonic() - started
    ticker.cancel()
    assert took < 1.5  # the sleep (2 s) goes on in its thread; the turn has ended
    assert ticks >= 3  # the loop kept turning meanwhile (a blocked loop: 0 or 1)
    assert isinstance(events[0], Notice) and "took longer than 0.5 s" in events[0].message
    assert isinstance(events[-1], Done) and events[-1].status == "cancelled"
    assert events[-1].timeout == "skill"


async def test_ctx_calls_of_a_threaded_skill_reach_the_daemons_loop() -> None:
    text, events = await run_skill_text(Busy(), "hello", fake_context(FakeBackend(["hi there"])))
    reply, vectors, counted, thread = text.split("|")
    assert reply == "hi there" and vectors == "2" and counted == "True"
    assert int(thread) != threading.get_ident()
    assert any(isinstance(e, Progress) and e.message == "thinking" for e in events)
    assert isinstance(events[-1], Done) and events[-1].status == "complete"

    text, _ = await run_skill_text(OnLoop(), "hello", fake_context(FakeBackend(["hi"])))
    assert text.split("|")[-1] == str(threading.get_ident())


async def test_a_sleeping_skill_does_not_stall_another_clients_turn(
        isolated_env: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")
    monkeypatch.setenv("ASSISTANT_PLUGINS__SKILL_TIMEOUT", "1")
    async with in_process_daemon(load_settings(), plugins={"sleepy": Plugin()}) as daemon:
        ended: dict[str, float] = {}
        started = time.monotonic()

        async def turn(text: str) -> list[dict[str, Any]]:
            events = await daemon.events("/api/turns", {"text": text})
            ended[text] = time.monotonic() - started
            return events

        sleepy = asyncio.create_task(turn("/sleepy now"))
        await asyncio.sleep(0.1)
        chat = await turn("/chat hello")
        slept = await sleepy
    assert chat[-1]["type"] == "done" and chat[-1]["status"] == "complete"
    assert ended["/chat hello"] < 1.5  # well before the other skill's 2 s sleep ends
    assert slept[-1]["type"] == "done" and slept[-1]["status"] == "cancelled"
    assert any(e["type"] == "notice" and "took longer than 1 s" in e["message"] for e in slept)
    assert ended["/sleepy now"] < 1.9
