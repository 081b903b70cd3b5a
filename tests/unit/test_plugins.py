"""The plugin host: discovery, each hook, and every isolation case."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator
from pathlib import Path

import click
import pytest
from pydantic import ValidationError

from assistant import hookimpl
from assistant.breaker import Breaker, fault_of
from assistant.config import PluginsSettings, load_settings
from assistant.daemon.host_requests import request_error
from assistant.documents.reader import DocumentError
from assistant.error_codes import http_error
from assistant.errors import (
    HostError,
    HostStopped,
    ModelLoadError,
    PluginError,
    QueueFull,
    RequestError,
    StorageUnavailable,
)
from assistant.plugins import PluginHost, load_plugins, reset_plugins
from assistant.skills import DeltaEvent, Done, ErrorEvent, Event, Notice, Reply, Skill, Turn
from assistant.testing import FakeBackend, FakeModelPlugin, fake_context
from tests.installed import install_plugin


class Echo(Skill):
    name = "echo"
    examples = ("echo this",)

    async def run(self, turn: Turn, ctx) -> AsyncIterator[Event]:  # type: ignore[no-untyped-def]
        yield DeltaEvent(turn.text)


class Boom(Skill):
    name = "boom"

    async def run(self, turn: Turn, ctx) -> AsyncIterator[Event]:  # type: ignore[no-untyped-def]
        raise ValueError("kaboom")
        yield DeltaEvent("")


class Hang(Skill):
    name = "hang"

    async def run(self, turn: Turn, ctx) -> AsyncIterator[Event]:  # type: ignore[no-untyped-def]
        yield DeltaEvent("partial ")
        await asyncio.sleep(3600)


def skill_plugin(*skills: Skill) -> object:
    @hookimpl
    def register_skills(register):  # type: ignore[no-untyped-def]
        for skill in skills:
            register(skill)

    return types.SimpleNamespace(register_skills=register_skills)


def settings(**kw: object) -> PluginsSettings:
    return PluginsSettings.model_validate(kw)


def run(host: PluginHost, skill: str, text: str = "hi") -> list[Event]:
    async def go() -> list[Event]:
        return [e async for e in host.run_skill(skill, Turn(text), fake_context())]

    return asyncio.run(go())


# -- discovery --------------------------------------------------------------------------------

def test_bundled_plugins_load_through_entry_points() -> None:
    host = PluginHost()
    host.load_entry_points()
    bundled = {i.name: i for i in host.info() if i.bundled}
    assert set(bundled) >= {"chat", "translate", "summarize", "qa"}
    assert all(i.status == "loaded" and i.version for i in bundled.values())
    assert bundled["chat"].skills == ["chat"]
    assert bundled["chat"].hooks == ["register_skills"]


def test_environment_narrows_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_PLUGINS", "chat,qa")
    reset_plugins()
    try:
        host = load_plugins(load_settings())
        assert load_plugins(load_settings()) is host  # idempotent
        assert {i.name for i in host.info()} == {"chat", "qa"}
    finally:
        reset_plugins()


def test_unknown_enabled_plugin_is_reported() -> None:
    host = PluginHost(settings(enabled=["nope"]))
    host.load_entry_points()
    (info,) = host.info()
    assert info.status == "failed" and "nope" in (info.error or "")


TWIN = """
from assistant import DeltaEvent, Skill, hookimpl


class Twin(Skill):
    name = "SKILL"
    examples = ("say twin",)

    async def run(self, turn, ctx):
        yield DeltaEvent("twin")


@hookimpl
def register_skills(register):
    register(Twin())
"""


def test_a_plugin_name_two_distributions_declare_fails_naming_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_plugin(site, "twin_one", TWIN.replace("SKILL", "twin1"), "twin",
                   distribution="twin-one")
    install_plugin(site, "twin_two", TWIN.replace("SKILL", "twin2"), "twin",
                   distribution="twin-two", version="2.0")
    install_plugin(site, "my_qa", TWIN.replace("SKILL", "myqa"), "qa", distribution="my-qa")
    monkeypatch.syspath_prepend(str(site))
    host = PluginHost()
    host.load_entry_points()
    infos = {i.name: i for i in host.info()}
    assert infos["twin"].status == "failed"
    assert "twin-one 0.1 and twin-two 2.0" in (infos["twin"].error or "")
    assert infos["qa"].status == "failed"  # a bundled name taken again: neither loads
    assert "assistant-daemon" in (infos["qa"].error or "")
    assert "my-qa 0.1" in (infos["qa"].error or "")
    assert not {"twin1", "twin2", "myqa", "qa"} & set(host.skills)
    assert infos["chat"].status == "loaded"  # the others load on
    problems = host.problems()
    assert any(p.startswith("plugin 'twin' failed to load: two distributions declare")
               and "uninstall one" in p for p in problems)


def test_strict_mode_makes_a_duplicate_plugin_name_fatal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_plugin(site, "chat_too", TWIN.replace("SKILL", "chat2"), "chat",
                   distribution="chat-too")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError, match=r"\(assistant-daemon .* and chat-too 0.1\)"):
        PluginHost(settings(strict=True)).load_entry_points()


# -- isolation --------------------------------------------------------------------------------

def test_import_error_is_recorded_and_others_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    real = metadata.entry_points

    def entry_points(group: str):  # type: ignore[no-untyped-def]
        broken = metadata.EntryPoint("broken", "assistant_no_such_module", group)
        return [*real(group=group), broken]

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    host = PluginHost()
    host.load_entry_points()
    infos = {i.name: i for i in host.info()}
    assert infos["broken"].status == "failed"
    assert "ModuleNotFoundError" in (infos["broken"].error or "")
    assert infos["chat"].status == "loaded" and "chat" in host.available_skills()


def test_strict_mode_makes_import_errors_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    monkeypatch.setattr(metadata, "entry_points", lambda group: [
        metadata.EntryPoint("broken", "assistant_no_such_module", group)])
    monkeypatch.setenv("ASSISTANT_PLUGINS_STRICT", "1")
    reset_plugins()
    with pytest.raises(PluginError, match="broken"):
        load_plugins(load_settings())
    reset_plugins()


def test_strict_mode_makes_hook_errors_fatal() -> None:
    host = PluginHost(settings(strict=True))

    @hookimpl
    def before_turn(turn):  # type: ignore[no-untyped-def]
        raise RuntimeError("guardrail bug")

    host.register(types.SimpleNamespace(before_turn=before_turn), "bad")
    with pytest.raises(PluginError, match="guardrail bug"):
        host.call("before_turn", turn=Turn("x"))


def test_raising_hook_is_reported_and_others_run() -> None:
    host = PluginHost()
    seen: list[str] = []

    @hookimpl
    def bad_before(turn):  # type: ignore[no-untyped-def]
        raise RuntimeError("oops")

    @hookimpl
    def good_before(turn):  # type: ignore[no-untyped-def]
        seen.append(turn.text)

    @hookimpl
    def other_before(turn):  # type: ignore[no-untyped-def]
        seen.append(turn.text.upper())

    host.register(types.SimpleNamespace(before_turn=good_before), "good1")
    host.register(types.SimpleNamespace(before_turn=bad_before), "bad")
    host.register(types.SimpleNamespace(before_turn=other_before), "good2")
    notices = host.call("before_turn", turn=Turn("hello"))
    assert seen == ["hello", "HELLO"]
    assert len(notices) == 1 and "bad" in notices[0] and "oops" in notices[0]
    assert host.plugins["bad"].failures == 1


def test_registration_error_fails_only_that_plugin() -> None:
    host = PluginHost()

    @hookimpl
    def register_skills(register):  # type: ignore[no-untyped-def]
        raise ImportError("missing optional dependency")

    host.register(types.SimpleNamespace(register_skills=register_skills), "bad")
    host.register(skill_plugin(Echo()), "good")
    assert host.plugins["bad"].status == "failed"
    assert list(host.available_skills()) == ["echo"]


def test_hanging_skill_is_cancelled_with_notice() -> None:
    host = PluginHost(settings(skill_timeout=0.2))
    host.register(skill_plugin(Hang()), "hangs")
    events = run(host, "hang")
    assert events[0] == DeltaEvent("partial ")
    assert isinstance(events[1], Notice) and "cancelled" in events[1].message
    assert events[-1] == Done("cancelled", timeout="skill")
    assert host.breaker("hang").failures == 1


def test_raising_skill_yields_error_event() -> None:
    host = PluginHost()
    host.register(skill_plugin(Boom()), "booms")
    events = run(host, "boom")
    assert isinstance(events[0], ErrorEvent) and "kaboom" in events[0].message
    assert events[-1] == Done("error")


def test_circuit_breaker_disables_only_the_failing_skill() -> None:
    host = PluginHost(settings(max_failures=3))
    host.register(skill_plugin(Boom(), Echo()), "flaky")
    for _ in range(2):
        run(host, "boom")
    run(host, "echo")  # another skill's success does not re-arm boom's count
    assert host.breaker("boom").failures == 2
    run(host, "boom")
    assert host.breaker("boom").state == "disabled"
    assert list(host.available_skills()) == ["echo"]  # the plugin's other skill stays
    assert run(host, "echo")[0] == DeltaEvent("hi")
    events = run(host, "boom")
    assert isinstance(events[0], ErrorEvent) and events[0].code == "skill_unavailable"
    assert "disabled after 3 failures" in events[0].message and events[-1] == Done("error")
    (info,) = host.info()
    assert info.status == "loaded" and info.health["boom"]["state"] == "disabled"
    assert "ValueError: kaboom" in info.health["boom"]["traceback"]
    assert info.health["echo"]["state"] == "available"
    assert any("skill 'boom'" in p and "plugins enable boom" in p for p in host.problems())


def test_a_skill_failure_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    host = PluginHost()
    host.register(skill_plugin(Boom()), "booms")
    run(host, "boom")
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "boom" in record.getMessage() and "booms" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_disabled_skill_is_tried_again_after_the_cooldown_and_enable_rearms_it() -> None:
    host = PluginHost(settings(max_failures=2, cooldown=30))
    host.register(skill_plugin(Boom(), Echo()), "flaky")
    clock = Clock()
    host.breaker("boom").clock = clock
    run(host, "boom"), run(host, "boom")
    assert host.breaker("boom").state == "disabled"
    assert host.breaker("boom").retry_in() == 30
    clock.now += 30
    assert host.breaker("boom").state == "retrying" and "boom" in host.available_skills()
    events = run(host, "boom")  # the trial fails: disabled again, for twice as long
    assert "kaboom" in events[0].message  # type: ignore[union-attr]
    assert host.breaker("boom").state == "disabled" and host.breaker("boom").retry_in() == 60
    assert host.enable("boom") == ["boom"]
    assert host.breaker("boom").state == "available" and host.breaker("boom").failures == 0
    run(host, "boom"), run(host, "boom")
    assert host.enable("flaky") == ["boom", "echo"]  # it has no event hooks
    assert "boom" in host.available_skills()
    with pytest.raises(RequestError, match="no plugin or skill named 'nope'"):
        host.enable("nope")


def test_cooldown_zero_keeps_a_skill_disabled_until_enabled() -> None:
    host = PluginHost(settings(max_failures=1, cooldown=0))
    host.register(skill_plugin(Boom()), "booms")
    clock = Clock()
    host.breaker("boom").clock = clock
    run(host, "boom")
    clock.now += 10 ** 6
    assert host.breaker("boom").state == "disabled" and host.breaker("boom").retry_in() is None
    assert "until `assistant plugins enable`" in host.breaker("boom").why()


class TooLong(Skill):
    """A skill whose model refuses the prompt, as the model manager does."""

    name = "long"

    async def run(self, turn: Turn, ctx) -> AsyncIterator[Event]:  # type: ignore[no-untyped-def]
        raise RequestError("the prompt is 9000 tokens, beyond the context of 2048",
                           code="context_length_exceeded", param="messages")
        yield DeltaEvent("")


class HostDied(Skill):
    """A skill whose model host stopped under it, as the model manager reports it."""

    name = "crashy"

    async def run(self, turn: Turn, ctx) -> AsyncIterator[Event]:  # type: ignore[no-untyped-def]
        yield DeltaEvent("half ")
        raise ModelLoadError("the model host stopped while running 'fake'; it is restarting",
                             "Try the request again.")


class BadFile(Skill):
    """A skill given a file that cannot be read."""

    name = "reader"

    async def run(self, turn: Turn, ctx) -> AsyncIterator[Event]:  # type: ignore[no-untyped-def]
        raise DocumentError("/tmp/x.pdf: is not a readable PDF (EOF marker not found)")
        yield DeltaEvent("")


@pytest.mark.parametrize(("skill", "code", "fault"), [
    (TooLong(), "context_length_exceeded", "caller"),
    (BadFile(), "unsupported_input", "caller"),
    (HostDied(), "model_unavailable", "infrastructure"),
])
def test_the_callers_and_the_infrastructures_errors_never_count(
        skill: Skill, code: str, fault: str) -> None:
    host = PluginHost(settings(max_failures=2))
    host.register(skill_plugin(skill), "p")
    for _ in range(5):
        events = run(host, skill.name)
        error = next(e for e in events if isinstance(e, ErrorEvent))
        assert error.code == code and "failed:" not in error.message
        assert error.error is not None and fault_of(error.error) == fault
    assert host.breaker(skill.name).failures == 0
    assert host.breaker(skill.name).state == "available" and host.problems() == []


def test_fault_of_reads_the_error_table() -> None:
    assert fault_of(RequestError("x", code="unsupported_parameter")) == "caller"
    assert fault_of(ModelLoadError("host stopped")) == "infrastructure"
    assert fault_of(QueueFull("busy")) == "infrastructure"
    assert fault_of(StorageUnavailable("disk full")) == "infrastructure"
    assert fault_of(ValueError("bug")) == "skill"
    assert fault_of(PluginError("bug")) == "skill"


def test_a_raising_hook_counts_against_its_plugins_hooks_only() -> None:
    host = PluginHost(settings(max_failures=2))

    @hookimpl
    def before_turn(turn):  # type: ignore[no-untyped-def]
        raise RuntimeError("hook bug")

    host.register(skill_plugin(Echo()), "both")
    host.register(types.SimpleNamespace(before_turn=before_turn), "both-hooks")
    host.call("before_turn", turn=Turn("x"))
    host.call("before_turn", turn=Turn("x"))
    assert not host.active("both-hooks", "before_turn")
    assert host.call("before_turn", turn=Turn("x")) == []
    assert "echo" in host.available_skills()
    assert {i.name: i.status for i in host.info()} == {"both": "loaded",
                                                       "both-hooks": "disabled"}
    assert host.enable("both-hooks") == ["both-hooks hooks"]
    assert host.active("both-hooks", "before_turn")


def test_another_hooks_success_does_not_re_arm_a_failing_hook() -> None:
    host = PluginHost(settings(max_failures=3))

    @hookimpl
    def before_turn(turn):  # type: ignore[no-untyped-def]
        raise RuntimeError("hook bug")

    @hookimpl
    def after_turn(turn, reply):  # type: ignore[no-untyped-def]
        pass

    host.register(types.SimpleNamespace(before_turn=before_turn, after_turn=after_turn), "two")
    for _ in range(3):
        host.call("before_turn", turn=Turn("x"))
        host.call("after_turn", turn=Turn("x"), reply=Reply("", "complete", "chat"))
    assert not host.active("two", "before_turn") and host.active("two", "after_turn")
    (info,) = host.info()
    assert info.status == "disabled" and info.health["hooks"]["hook"] == "before_turn"
    assert any("hook before_turn of plugin 'two'" in p for p in host.problems())


def test_enable_a_plugin_named_like_its_skill_re_arms_its_hooks_too() -> None:
    host = PluginHost(settings(max_failures=1))

    @hookimpl
    def register_skills(register):  # type: ignore[no-untyped-def]
        register(Boom())

    @hookimpl
    def before_turn(turn):  # type: ignore[no-untyped-def]
        raise RuntimeError("hook bug")

    host.register(types.SimpleNamespace(register_skills=register_skills,
                                        before_turn=before_turn), "boom")
    host.call("before_turn", turn=Turn("x"))
    run(host, "boom")
    assert not host.active("boom", "before_turn") and not host.breaker("boom").allows()
    assert host.enable("boom") == ["boom", "boom hooks"]
    assert host.active("boom", "before_turn") and host.breaker("boom").allows()


def test_retrying_admits_one_trial_and_ignores_turns_from_before_the_trip() -> None:
    clock = Clock()
    breaker = Breaker("s", max_failures=1, cooldown=10, clock=clock)
    early = breaker.admit()
    assert early is not None and not early.trial
    breaker.failed("boom", ticket=breaker.admit())
    assert breaker.state == "disabled" and breaker.admit() is None
    breaker.succeeded(early)  # a turn started before the trip ends well: says nothing now
    assert breaker.state == "disabled"
    clock.now += 10
    trial = breaker.admit()
    assert trial is not None and trial.trial
    assert breaker.admit() is None and not breaker.allows()  # the others fall back
    breaker.release(trial)  # the trial was cancelled: the next turn is the trial
    again = breaker.admit()
    assert again is not None and again.trial
    breaker.succeeded(again)
    assert breaker.state == "available" and breaker.failures == 0


def test_a_cancelled_trial_turn_leaves_its_place_to_the_next() -> None:
    host = PluginHost(settings(max_failures=1, cooldown=5))
    host.register(skill_plugin(Hang(), Echo()), "hangs")
    clock = Clock()
    breaker = host.breaker("hang")
    breaker.clock = clock
    breaker.failed("boom")
    clock.now += 5

    async def go() -> None:
        events = host.run_skill("hang", Turn("x"), fake_context())
        await anext(events)  # the trial runs
        assert breaker.trial_running and not breaker.allows()
        await events.aclose()  # the client went away

    asyncio.run(go())
    assert not breaker.trial_running and breaker.allows() and breaker.state == "retrying"


def test_strict_mode_ends_a_failed_skills_turn_with_its_error_event() -> None:
    host = PluginHost(settings(strict=True))
    host.register(skill_plugin(Boom()), "booms")
    events = run(host, "boom")  # no PluginError cutting the stream
    assert isinstance(events[-2], ErrorEvent) and "kaboom" in events[-2].message
    assert events[-1] == Done("error") and host.breaker("boom").failures == 1


def test_cooldown_zero_gives_no_retry_after_and_cooldown_is_capped() -> None:
    host = PluginHost(settings(max_failures=1, cooldown=0))
    host.register(skill_plugin(Boom()), "booms")
    run(host, "boom")
    error = host.unavailable("boom")
    assert error.retry_after is None and "Retry-After" not in http_error(error)[2]
    with pytest.raises(ValidationError, match="cooldown"):
        settings(cooldown=7200)


def test_a_model_host_crash_is_a_503_worth_retrying_at_once() -> None:
    error = request_error("m", HostError("HostCrashed", "the model host stopped"))
    assert isinstance(error, HostStopped) and fault_of(error) == "infrastructure"
    status, _, headers = http_error(error)
    assert status == 503 and headers["Retry-After"] == "1"


# -- one test per hook (tests/unit/test_docs.py checks these exist) -----------------------------

def test_register_skills() -> None:
    host = PluginHost()
    info = host.register(skill_plugin(Echo()), "echoes")
    assert info.skills == ["echo"] and host.skill_plugin["echo"] == "echoes"
    dup = host.register(skill_plugin(Echo()), "again")
    assert dup.status == "failed" and "already registered" in (dup.error or "")


def test_register_models() -> None:
    host = PluginHost()
    backend = FakeBackend()
    info = host.register(FakeModelPlugin(backend), "fake-model")
    assert host.backends == [backend] and "fake" in info.models


def test_register_commands() -> None:
    host = PluginHost()

    @hookimpl
    def register_commands(cli):  # type: ignore[no-untyped-def]
        @cli.command()
        def hello() -> None:
            click.echo("hi")

    host.register(types.SimpleNamespace(register_commands=register_commands), "cmds")
    group = click.Group("assistant")
    assert host.register_commands(group) is None
    assert "hello" in group.commands


def test_before_turn() -> None:
    host = PluginHost()

    @hookimpl
    def before_turn(turn):  # type: ignore[no-untyped-def]
        turn.meta["checked"] = True

    host.register(types.SimpleNamespace(before_turn=before_turn), "guard")
    turn = Turn("x")
    assert host.call("before_turn", turn=turn) == [] and turn.meta["checked"]


def test_after_turn() -> None:
    host = PluginHost()
    got: list[Reply] = []

    @hookimpl
    def after_turn(turn, reply):  # type: ignore[no-untyped-def]
        got.append(reply)

    host.register(types.SimpleNamespace(after_turn=after_turn), "memory")
    reply = Reply("answer", "complete", "chat")
    host.call("after_turn", turn=Turn("q"), reply=reply)
    assert got == [reply]


def test_startup() -> None:
    host = PluginHost()
    events: list[str] = []

    @hookimpl
    async def startup(daemon):  # type: ignore[no-untyped-def]
        events.append(f"start {daemon}")

    host.register(types.SimpleNamespace(startup=startup), "lifecycle")
    assert asyncio.run(host.acall("startup", daemon="d")) == []
    assert events == ["start d"]


def test_shutdown() -> None:
    host = PluginHost()

    @hookimpl
    async def shutdown(daemon):  # type: ignore[no-untyped-def]
        raise OSError("disk gone")

    host.register(types.SimpleNamespace(shutdown=shutdown), "lifecycle")
    notices = asyncio.run(host.acall("shutdown", daemon="d"))
    assert len(notices) == 1 and "disk gone" in notices[0]
