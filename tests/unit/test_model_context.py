"""The context a chat model runs with, as ModelManager tells skills, the daemon and its clients
(no model host started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from assistant.config import load_settings
from assistant.context import BackendContext
from assistant.daemon import openai_api
from assistant.daemon.model_manager import ModelManager, Resident
from assistant.daemon.runtime import RuntimeFiles
from assistant.daemon.services import Services
from assistant.errors import RequestError
from assistant.models import registry
from assistant.models.backend import GenerationParams
from assistant.models.footprint import Footprint
from assistant.plugins import PluginHost
from assistant.testing import FAKE_MODEL, FakeBackend
from tests.unit.test_models_registry import build_gguf  # trained context: 1024


def manager(tmp_path: Path, context_length: int) -> ModelManager:
    settings = load_settings({"paths": {"models_dir": str(tmp_path / "models")},
                              "models": {"context_length": context_length}})
    registry.add(settings, build_gguf(tmp_path / "Tiny.F16.gguf"))
    return ModelManager(settings)


@pytest.mark.asyncio
@pytest.mark.parametrize(("configured", "expected"), [(512, 512), (4096, 1024), (0, 1024)])
async def test_the_configured_context_capped_by_the_trained_one(
        tmp_path: Path, configured: int, expected: int) -> None:
    assert await manager(tmp_path, configured).context_length("Tiny.F16") == expected


@pytest.mark.asyncio
async def test_a_loaded_model_answers_with_what_the_host_gave_it(tmp_path: Path) -> None:
    models = manager(tmp_path, 4096)
    models.resident["Tiny.F16"] = Resident("Tiny.F16", "chat", Footprint(1),
                                           models.host.generation,
                                           {"n_ctx": 2048, "n_ctx_train": 32768})
    assert await models.context_length("Tiny.F16") == 2048


@pytest.mark.asyncio
@pytest.mark.parametrize(("configured", "expected"), [(512, 512), (4096, 1024), (0, 1024)])
async def test_a_model_is_loaded_with_no_more_context_than_it_was_trained_on(
        tmp_path: Path, configured: int, expected: int) -> None:
    models = manager(tmp_path, configured)
    asked: dict[str, object] = {}

    async def call(op: str, **request: object) -> dict[str, object]:
        if op == "cpu":  # the host names its CPU variant before its first chat model
            return {}
        asked.update(request, op=op)
        return {"n_ctx": request["n_ctx"], "n_ctx_train": 1024}

    models.host.call = call  # type: ignore[method-assign]
    await models._load("Tiny.F16")
    assert asked["op"] == "load" and asked["n_ctx"] == expected


@pytest.mark.asyncio
async def test_unknown_and_plugin_models_without_a_context_say_none(tmp_path: Path) -> None:
    models = manager(tmp_path, 4096)
    models.add_backend(FakeBackend())
    assert await models.context_length("no-such-model") is None
    assert await models.context_length(FAKE_MODEL) is None


@pytest.mark.asyncio
async def test_a_plugin_backend_that_fails_to_say_its_context_is_taken_as_not_knowing(
        tmp_path: Path) -> None:
    class Broken(FakeBackend):
        async def context_length(self, model: str) -> int | None:
            raise RuntimeError("the plugin's bug")

    models = manager(tmp_path, 4096)
    models.add_backend(Broken())
    assert await models.context_length(FAKE_MODEL) is None


@pytest.mark.asyncio
async def test_a_skill_context_asks_for_the_model_generate_would_use(tmp_path: Path) -> None:
    models = manager(tmp_path, 4096)
    models.add_backend(FakeBackend())
    assert await BackendContext(models, FAKE_MODEL).context_length() is None
    configured = BackendContext(models, FAKE_MODEL, config={"model": "Tiny.F16"})
    assert await configured.context_length() == 1024


@pytest.mark.asyncio
@pytest.mark.parametrize(("configured", "expected"), [(512, 512), (4096, 1024), (0, 1024)])
async def test_the_daemon_checks_max_tokens_against_the_same_context(
        tmp_path: Path, configured: int, expected: int) -> None:
    models = manager(tmp_path, configured)
    await models.check_max_tokens("Tiny.F16", GenerationParams(max_tokens=expected))
    with pytest.raises(RequestError, match=f"\\({expected} tokens\\)"):
        await models.check_max_tokens("Tiny.F16", GenerationParams(max_tokens=expected + 1))


@pytest.mark.parametrize(("configured", "expected"), [(512, 512), (4096, 1024), (0, 1024)])
def test_the_model_list_gives_the_same_context_beside_the_trained_one(
        tmp_path: Path, configured: int, expected: int) -> None:
    models = manager(tmp_path, configured)
    models.add_backend(FakeBackend())
    app = FastAPI()
    app.state.services = Services(models.settings, RuntimeFiles(models.settings), models,
                                  PluginHost())
    app.include_router(openai_api.router)
    listed = {m["id"]: m for m in TestClient(app).get("/v1/models").json()["data"]}
    assert listed["Tiny.F16"]["context"] == expected
    assert listed["Tiny.F16"]["context_length"] == 1024  # the trained context, as before
    assert listed[FAKE_MODEL]["context"] is None  # its backend cannot tell


@pytest.mark.asyncio
async def test_a_turn_s_skill_sees_the_model_s_context_through_the_metering(
        tmp_path: Path) -> None:
    # The daemon gives a turn's skill its backend wrapped in Metered (usage counting); every
    # Backend method must reach the model manager, or skills fall back to the defaults (no
    # context known: summarize never reads a text in one pass).
    from assistant.daemon.reply import Metered
    from assistant.models.backend import Backend

    inner = manager(tmp_path, 512)
    ctx = BackendContext(Metered(inner, lambda model, delta: None), "Tiny.F16")
    assert await ctx.context_length() == 512
    overridden = {name for name, value in vars(Metered).items() if callable(value)}
    public = {name for name, value in vars(Backend).items()
              if callable(value) and not name.startswith("_")}
    assert public <= overridden


@pytest.mark.asyncio
async def test_a_damaged_model_file_has_no_context_rather_than_breaking_the_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.errors import ModelIntegrityError

    def damaged(settings: object, name: str) -> None:
        raise ModelIntegrityError("the file does not match its stamp")

    models = manager(tmp_path, 4096)
    monkeypatch.setattr(registry, "resolve", damaged)
    assert await models.context_length("Tiny.F16") is None
