"""A CPU variant that kills the model host with SIGILL is not loaded again: the next host runs
the one below it (auto), or the request says the forced variant crashed. Before, the restarted
host loaded the same variant and died again, and every request failed.

The model host here is a stand-in run by the real HostProcess: it speaks the host's protocol,
chooses its variant with ``cpu.choose`` from what the daemon sends, and dies by the signal a
prompt names."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.daemon.model_manager import ModelManager
from assistant.error_codes import http_error
from assistant.errors import HostStopped, ModelLoadError
from assistant.models import registry
from assistant.models.backend import GenerationParams
from assistant.models.host_process import HostProcess
from tests.unit.test_model_budget import build_chat

STAND_IN = r"""
import json, os, resource, signal, sys
from pathlib import Path
from assistant.models import cpu

resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
libraries = {name: Path(f"/lib/libggml-cpu-{name}.so") for name in ("zen4", "cooperlake", "x64")}
flags = set(cpu.NEEDS["zen4"])
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "load":
        choice = cpu.choose(libraries, flags, request["cpu_variant"], request["avoid"])[0]
        print(json.dumps({"id": request["id"], "ok": {
            "n_ctx": request["n_ctx"], "avoid": request["avoid"],
            "cpu_variant": {"variant": choice.variant, "reason": choice.reason}}}), flush=True)
    elif request["op"] == "complete":
        os.kill(os.getpid(), getattr(signal, request["prompt"]))
"""


def manager(tmp_path: Path, cpu_variant: str) -> ModelManager:
    settings = load_settings({
        "paths": {"models_dir": str(tmp_path / "models")},
        "models": {"context_length": 256, "cpu_variant": cpu_variant},
    })
    registry.add(settings, build_chat(tmp_path / "a.gguf"), name="a")
    return ModelManager(settings, HostProcess(command=[sys.executable, "-c", STAND_IN]))


async def die(models: ModelManager, signal_name: str) -> ModelLoadError:
    """Run a prompt on which the host dies by ``signal_name``; the error the request got."""
    with pytest.raises(ModelLoadError) as failed:
        async for _ in models.complete("a", signal_name, GenerationParams()):
            pass
    return failed.value


@pytest.mark.asyncio
async def test_a_variant_auto_chose_that_dies_with_sigill_is_stepped_down_for_good(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    models = manager(tmp_path, "auto")
    try:
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
    finally:
        await models.host.stop()


@pytest.mark.asyncio
async def test_a_host_killed_by_another_signal_keeps_its_variant(tmp_path: Path) -> None:
    models = manager(tmp_path, "auto")
    try:
        await models.load("a")
        failed = await die(models, "SIGSEGV")
        assert isinstance(failed, HostStopped) and "SIGILL" not in failed.message
        again = await models.load("a")
        assert again.info["avoid"] == [] and again.info["cpu_variant"]["variant"] == "zen4"
    finally:
        await models.host.stop()


@pytest.mark.asyncio
async def test_a_forced_variant_that_dies_with_sigill_is_not_stepped_down_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    models = manager(tmp_path, "zen4")
    try:
        first = await models.load("a")
        assert first.info["cpu_variant"] == {"variant": "zen4",
                                             "reason": "set by models.cpu_variant"}
        with caplog.at_level(logging.ERROR, logger="assistant.models"):
            failed = await die(models, "SIGILL")
        # Not a HostStopped: retrying on the same variant cannot help.
        assert type(failed) is ModelLoadError
        assert ("died with SIGILL (an invalid instruction) running 'a' on CPU variant 'zen4', "
                "which models.cpu_variant forces") in failed.message
        assert failed.hint == 'Set models.cpu_variant = "auto" and restart the daemon.'
        status, body, headers = http_error(failed)
        assert (status, body["error"]["code"], headers) == (503, "model_unavailable", {})
        assert "variant zen4, which models.cpu_variant forces" in caplog.text
        assert 'set models.cpu_variant = "auto"' in caplog.text

        again = await models.load("a")
        assert again.info["avoid"] == [] and again.info["cpu_variant"]["variant"] == "zen4"
    finally:
        await models.host.stop()
