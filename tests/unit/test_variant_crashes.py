"""A CPU variant that kills the model host with SIGILL is not loaded again: the next host runs
the one below it (auto), or the request says the forced variant crashed. Before, the restarted
host loaded the same variant and died again, and every request failed.

The model host here is a stand-in run by the real HostProcess: it speaks the host's protocol,
chooses its variant with ``cpu.choose`` from what the daemon sends, and dies by the signal a
prompt (or a model's name, while it loads) names."""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from assistant.config import load_settings
from assistant.daemon.model_manager import ModelManager
from assistant.error_codes import http_error
from assistant.errors import HostStopped, ModelLoadError
from assistant.models import cpu, registry
from assistant.models import host as model_host
from assistant.models.backend import GenerationParams
from assistant.models.host_process import HostProcess
from tests.unit.test_model_budget import build_chat

STAND_IN = r"""
import json, os, resource, signal, sys
from pathlib import Path
from assistant.models import cpu

resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
libraries = {name: Path(f"/lib/libggml-cpu-{name}.so") for name in sys.argv[1].split(",")}
flags = set(cpu.NEEDS["zen4"])


def variant(request):
    choices = cpu.choose(libraries, flags, request["cpu_variant"], request["avoid"])
    return {"variant": choices[0].variant, "reason": choices[0].reason} if choices else None


for line in sys.stdin:
    request = json.loads(line)
    rid, op = request["id"], request["op"]
    if op == "cpu":
        if (chosen := variant(request)) is None:
            print(json.dumps({"id": rid, "error": {"type": "ModelLoadError", "message": (
                "no CPU variant of llama.cpp loaded on this machine")}}), flush=True)
        else:
            print(json.dumps({"id": rid, "ok": {"pid": os.getpid(), "cpu_variant": chosen}}),
                  flush=True)
    elif op == "load":
        if request["model"].startswith("SIG"):  # dies while it loads, as ggml repacks
            os.kill(os.getpid(), getattr(signal, request["model"]))
        print(json.dumps({"id": rid, "ok": {
            "n_ctx": request["n_ctx"], "avoid": request["avoid"],
            "cpu_variant": variant(request)}}), flush=True)
    elif op == "complete":
        os.kill(os.getpid(), getattr(signal, request["prompt"]))
"""

Make = Callable[..., ModelManager]


@pytest_asyncio.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """Build managers whose host is the stand-in, with ``libraries`` installed; each one's
    host is stopped at the end."""
    made: list[ModelManager] = []

    def build(cpu_variant: str = "auto", libraries: str = "zen4,cooperlake,x64") -> ModelManager:
        settings = load_settings({
            "paths": {"models_dir": str(tmp_path / "models")},
            "models": {"context_length": 256, "cpu_variant": cpu_variant},
        })
        for name in ("a", "SIGILL"):
            registry.add(settings, build_chat(tmp_path / f"{name}.gguf"), name=name)
        made.append(ModelManager(settings, HostProcess(
            command=[sys.executable, "-c", STAND_IN, libraries])))
        return made[-1]

    yield build
    for models in made:
        await models.host.stop()


async def die(models: ModelManager, signal_name: str) -> ModelLoadError:
    """Run a prompt on which the host dies by ``signal_name``; the error the request got."""
    with pytest.raises(ModelLoadError) as failed:
        async for _ in models.complete("a", signal_name, GenerationParams()):
            pass
    return failed.value


@pytest.mark.asyncio
async def test_a_variant_auto_chose_that_dies_with_sigill_is_stepped_down_for_good(
        make: Make, caplog: pytest.LogCaptureFixture) -> None:
    models = make()
    first = await models.load("a")
    assert first.info["avoid"] == [] and first.info["cpu_variant"]["variant"] == "zen4"
    with caplog.at_level(logging.WARNING, logger="assistant.models"):
        failed = await die(models, "SIGILL")
    assert isinstance(failed, HostStopped)  # a 503 to retry: the retry runs
    assert "died with SIGILL running 'a' on CPU variant 'zen4'" in failed.message
    assert "CPU variant zen4 died with SIGILL" in caplog.text

    second = await models.load("a")  # a new host
    assert second.info["avoid"] == ["zen4"]
    assert second.info["cpu_variant"] == {
        "variant": "cooperlake",
        "reason": "the best this CPU and OS can run; zen4 died with SIGILL"}

    await die(models, "SIGILL")
    third = await models.load("a")
    assert third.info["avoid"] == ["zen4", "cooperlake"]
    assert third.info["cpu_variant"]["variant"] == "x64"


@pytest.mark.asyncio
async def test_a_sigill_while_a_model_loads_is_blamed_on_the_variant(make: Make) -> None:
    models = make()
    with pytest.raises(HostStopped) as failed:
        await models.load("SIGILL")  # the stand-in dies loading this one
    assert "died with SIGILL running 'SIGILL' on CPU variant 'zen4'" in failed.value.message
    assert models.variant_crashes.avoid == ["zen4"]
    again = await models.load("a")
    assert again.info["cpu_variant"]["variant"] == "cooperlake"


@pytest.mark.asyncio
async def test_a_host_killed_by_another_signal_keeps_its_variant(make: Make) -> None:
    models = make()
    await models.load("a")
    failed = await die(models, "SIGSEGV")
    assert isinstance(failed, HostStopped) and "SIGILL" not in failed.message
    again = await models.load("a")
    assert again.info["avoid"] == [] and again.info["cpu_variant"]["variant"] == "zen4"


@pytest.mark.asyncio
async def test_a_healthy_host_after_a_sigill_that_crashes_otherwise_is_not_called_sigill(
        make: Make) -> None:
    models = make()
    await models.load("a")
    await die(models, "SIGILL")
    assert (await models.load("a")).info["cpu_variant"]["variant"] == "cooperlake"
    failed = await die(models, "SIGSEGV")
    assert isinstance(failed, HostStopped) and "SIGILL" not in failed.message
    assert models.variant_crashes.avoid == ["zen4"]
    assert (await models.load("a")).info["cpu_variant"]["variant"] == "cooperlake"


@pytest.mark.asyncio
async def test_nothing_is_stepped_below_the_baseline(
        make: Make, caplog: pytest.LogCaptureFixture) -> None:
    models = make(libraries="zen4,cooperlake,haswell,x64")
    for expected in ("zen4", "cooperlake"):
        assert (await models.load("a")).info["cpu_variant"]["variant"] == expected
        assert isinstance(await die(models, "SIGILL"), HostStopped)
    assert (await models.load("a")).info["cpu_variant"]["variant"] == cpu.BASELINE
    with caplog.at_level(logging.ERROR, logger="assistant.models"):
        failed = await die(models, "SIGILL")
    assert type(failed) is ModelLoadError  # the same variant again: a retry cannot help
    assert "variants at or below the baseline (haswell) are not stepped down" in failed.message
    assert "at or below the baseline haswell: not stepped down" in caplog.text
    assert models.variant_crashes.avoid == ["zen4", "cooperlake"]
    assert (await models.load("a")).info["cpu_variant"]["variant"] == "haswell"


@pytest.mark.asyncio
async def test_when_the_variants_run_out_the_hint_says_restart_or_set_one(make: Make) -> None:
    models = make(libraries="zen4,cooperlake")  # no baseline installed
    for _ in range(2):
        await models.load("a")
        await die(models, "SIGILL")
    with pytest.raises(ModelLoadError) as failed:
        await models.load("a")
    assert "no CPU variant of llama.cpp loaded" in failed.value.message
    assert failed.value.hint is not None
    assert "Restart the daemon" in failed.value.hint and "models.cpu_variant" in failed.value.hint
    assert "Check the file" not in failed.value.hint


@pytest.mark.asyncio
async def test_a_forced_variant_that_dies_with_sigill_is_not_stepped_down_and_says_so(
        make: Make, caplog: pytest.LogCaptureFixture) -> None:
    models = make("zen4")
    first = await models.load("a")
    assert first.info["cpu_variant"] == {"variant": "zen4",
                                         "reason": "set by models.cpu_variant"}
    with caplog.at_level(logging.ERROR, logger="assistant.models"):
        failed = await die(models, "SIGILL")
    # Not a HostStopped: retrying on the same variant cannot help.
    assert type(failed) is ModelLoadError
    assert ("CPU variant 'zen4', which models.cpu_variant forces, crashed with SIGILL on this "
            "machine") in failed.message
    assert failed.hint == 'Set models.cpu_variant = "auto" and restart the daemon.'
    status, body, headers = http_error(failed)
    assert (status, body["error"]["code"], headers) == (503, "model_unavailable", {})
    assert "variant zen4, which models.cpu_variant forces" in caplog.text
    assert 'set models.cpu_variant = "auto"' in caplog.text

    again = await models.load("a")
    assert again.info["avoid"] == [] and again.info["cpu_variant"]["variant"] == "zen4"


class FakeRunner:
    """Stands in for LlamaRunner: what Host.handle reads of a loaded model."""

    def __init__(self, path: str, **_: Any) -> None:
        self.path = path
        self.states = SimpleNamespace(directory=None)

    def info(self) -> dict[str, Any]:
        return {"n_ctx": 256}


def test_the_host_loads_its_variant_with_the_variants_to_avoid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, list[str]]] = []

    def load(forced: str = "auto", avoid: Any = ()) -> dict[str, Any]:
        asked.append((forced, list(avoid)))
        return {"variant": "cooperlake", "reason": "the best this CPU and OS can run"}

    monkeypatch.setattr(cpu, "load", load)
    monkeypatch.setattr(model_host, "LlamaRunner", FakeRunner)
    host = model_host.Host(model_host._Output(io.BytesIO()))
    assert host.handle({"op": "cpu", "cpu_variant": "auto", "avoid": ["zen4"]}) == {
        "pid": os.getpid(),
        "cpu_variant": {"variant": "cooperlake", "reason": "the best this CPU and OS can run"}}
    reply = host.handle({"op": "load", "model": "a", "path": "/m/a.gguf", "n_ctx": 256,
                         "n_threads": 1, "cpu_variant": "auto", "avoid": ["zen4"]})
    assert reply is not None and reply["n_ctx"] == 256
    assert asked == [("auto", ["zen4"]), ("auto", ["zen4"])]
    assert isinstance(host.chat_models["a"], FakeRunner)
