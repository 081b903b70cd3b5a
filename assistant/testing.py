"""A test kit for plugin authors: a fake model, a temp environment, and a skill runner.

    from assistant.testing import FakeBackend, run_skill_text

    async def test_my_skill():
        text, events = await run_skill_text(MySkill(), "hello")
        assert "hello" in text

``FakeBackend`` is deterministic: it replies ``echo: <last user message>`` in word-sized deltas
(or a scripted reply) and embeds text as hashed bag-of-words vectors. It is a real
:class:`Backend`, registered as a real plugin by :class:`FakeModelPlugin`.

Use the fixtures by adding ``pytest_plugins = ["assistant.testing"]`` to your conftest.py.
Not here yet: a temp-daemon fixture, which needs the daemon (being written) to exist.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from assistant.context import BackendContext
from assistant.hookspecs import hookimpl
from assistant.models.backend import Backend, ChatMessage, Delta, GenerationParams, ModelInfo
from assistant.plugins import PluginHost
from assistant.skills import Event, Skill, Turn, collect, execute

FAKE_MODEL = "fake"
FAKE_EMBEDDING = "fake-embed"
DIM = 64


class FakeBackend(Backend):
    """A deterministic model. ``replies`` are returned in turn; then it echoes."""

    def __init__(self, replies: Sequence[str] = (), name: str = FAKE_MODEL) -> None:
        self.replies = list(replies)
        self.name = name
        self.calls: list[list[ChatMessage]] = []

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(self.name, "chat", 2048, owned_by="tests"),
                ModelInfo(FAKE_EMBEDDING, "embedding", 512, owned_by="tests")]

    async def chat(
        self, model: str, messages: list[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        self.calls.append(list(messages))
        if self.replies:
            reply = self.replies.pop(0)
        else:
            last = next((m.content for m in reversed(messages) if m.role == "user"), "")
            reply = f"echo: {last}"
        words = re.findall(r"\S+\s*", reply) or [""]
        if params.max_tokens is not None:
            words = words[: params.max_tokens]
        for word in words:
            yield Delta(word)
        yield Delta("", finish_reason="stop", prompt_tokens=sum(len(m.content) for m in messages),
                    completion_tokens=len(words))

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        return [hashed_vector(t) for t in texts]


def hashed_vector(text: str, dim: int = DIM) -> list[float]:
    """Bag of words hashed into ``dim`` buckets, L2-normalised: same words, same vector."""
    vec = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


class FakeModelPlugin:
    """A plugin that registers a :class:`FakeBackend` through ``register_models``."""

    def __init__(self, backend: FakeBackend | None = None) -> None:
        self.backend = backend or FakeBackend()

    @hookimpl
    def register_models(self, register: Callable[[Backend], None]) -> None:
        register(self.backend)


def fake_context(
    backend: Backend | None = None,
    *,
    history: Sequence[ChatMessage] = (),
    config: dict[str, Any] | None = None,
) -> BackendContext:
    """A real :class:`BackendContext` on the fake model (or ``backend``)."""
    return BackendContext(backend or FakeBackend(), FAKE_MODEL, embedding_model=FAKE_EMBEDDING,
                          history=history, config=config)


async def run_skill(
    skill: Skill, text: str | Turn, ctx: BackendContext | None = None, timeout: float = 10.0,
) -> list[Event]:
    """Run ``skill`` on ``text`` as the daemon would (timeout, error events) and return events."""
    turn = text if isinstance(text, Turn) else Turn(text)
    _, events = await collect(execute(skill, turn, ctx or fake_context(), timeout))
    return events


async def run_skill_text(
    skill: Skill, text: str | Turn, ctx: BackendContext | None = None, timeout: float = 10.0,
) -> tuple[str, list[Event]]:
    """Like :func:`run_skill`, also returning the reply text (every delta joined)."""
    turn = text if isinstance(text, Turn) else Turn(text)
    return await collect(execute(skill, turn, ctx or fake_context(), timeout))


# -- pytest fixtures --------------------------------------------------------------------------

@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def plugin_host(fake_backend: FakeBackend) -> Iterator[PluginHost]:
    """A fresh host with the fake model registered as a plugin, and no entry points loaded."""
    host = PluginHost()
    host.register(FakeModelPlugin(fake_backend), "fake-model")
    yield host


@pytest.fixture
def assistant_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the assistant's data, runtime and config dirs at a temp dir."""
    env = {
        "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
        "ASSISTANT_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
