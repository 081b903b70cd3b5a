"""A test kit for plugin authors: a fake model, a temp environment, and a skill runner.

    from assistant.testing import FakeBackend, run_skill_text

    async def test_my_skill():
        text, events = await run_skill_text(MySkill(), "hello")
        assert "hello" in text

``FakeBackend`` is deterministic: it replies ``echo: <last user message>`` (to a raw completion,
``echo: <prompt>``) in word-sized deltas (or a scripted reply) and embeds text as hashed
bag-of-words vectors. Asked for a JSON schema, it replies with the smallest value the schema
allows (:func:`smallest_json`); a GBNF grammar it refuses. It is a real :class:`Backend`,
registered as a real plugin by :class:`FakeModelPlugin`.

:func:`in_process_daemon` runs the real app, store and plugins in the test's own event loop,
with a :class:`FakeBackend` registered as a plugin instead of the model host: fast tests of
turns, re-routes and compaction through the HTTP API.

Use the fixtures by adding ``pytest_plugins = ["assistant.testing"]`` to your conftest.py.
``temp_daemon`` starts the real daemon (``python -m assistant serve``) on a temp data and a short
temp runtime dir, with the model named by the ``daemon_model`` fixture (override it in your
conftest; default ``$ASSISTANT_MODEL``) from ``$ASSISTANT_MODELS_DIR``, and stops it afterwards.
Installed plugins are seen by the daemon, so a plugin installed into a temp dir needs that dir
in ``extra_env={"PYTHONPATH": ...}`` of :func:`daemon_environment`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import pytest

from assistant.config import ENV_SHORTCUTS, Settings
from assistant.context import BackendContext
from assistant.errors import RequestError
from assistant.hookspecs import hookimpl
from assistant.json_example import smallest_json
from assistant.models.backend import Backend, ChatMessage, Delta, GenerationParams, ModelInfo
from assistant.models.structured import check as check_schema
from assistant.plugins import PluginHost
from assistant.skills import Event, Skill, Turn, collect, execute

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp

    from assistant.daemon.services import Services

FAKE_MODEL = "fake"
FAKE_EMBEDDING = "fake-embed"
DIM = 64


class FakeBackend(Backend):
    """A deterministic model. ``replies`` are returned in turn; then it echoes, or, given a
    ``json_schema``, replies with the smallest JSON value the schema allows. A reply is cut at
    ``max_tokens`` words (``finish_reason`` ``length``).

    A schema is checked as the daemon checks one (a keyword the grammar cannot enforce is a
    :class:`RequestError`). A ``grammar`` is refused with a :class:`RequestError` naming it:
    the fake cannot write text a GBNF grammar guarantees, so it never pretends to.

    Given ``token_logprobs``, it reports log-probabilities (``logprobs`` true): a reply's
    i-th word is one token of log-probability ``token_logprobs[i % len]``, so a reply's
    confidence is known in advance. Without them it declines ``logprobs``, as a plugin's
    backend that cannot report them does.
    """

    grammars = True

    def __init__(self, replies: Sequence[str] = (), name: str = FAKE_MODEL,
                 token_logprobs: Sequence[float] | None = None) -> None:
        self.replies = list(replies)
        self.name = name
        self.token_logprobs = list(token_logprobs or [])
        self.logprobs = bool(self.token_logprobs)
        self.calls: list[list[ChatMessage]] = []
        self.prompts: list[str] = []  # the raw prompts given to complete
        self.params: list[GenerationParams] = []  # every generation's, chat and complete

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(self.name, "chat", 2048, owned_by="tests"),
                ModelInfo(FAKE_EMBEDDING, "embedding", 512, owned_by="tests")]

    async def chat(
        self, model: str, messages: list[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        self.calls.append(list(messages))
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        async for delta in self._reply(last, sum(len(m.content) for m in messages), params):
            yield delta

    async def complete(
        self, model: str, prompt: str, params: GenerationParams
    ) -> AsyncIterator[Delta]:
        self.prompts.append(prompt)
        async for delta in self._reply(prompt, len(prompt), params):
            yield delta

    async def _reply(self, text: str, prompt_tokens: int, params: GenerationParams,
                     ) -> AsyncIterator[Delta]:
        self.params.append(params)
        if params.grammar is not None:
            raise RequestError(
                "grammar: the fake model cannot follow a GBNF grammar; test a skill that asks "
                "for one against the real model (the temp_daemon fixture), or ask for a "
                "json_schema", code="unsupported_parameter", param="grammar")
        if params.json_schema is not None:
            check_schema(params.json_schema)
        if self.replies:  # a scripted reply, even beside a schema: the test chose it
            reply = self.replies.pop(0)
        elif params.json_schema is not None:
            reply = json.dumps(smallest_json(params.json_schema))
        else:
            reply = f"echo: {text}"
        words = re.findall(r"\S+\s*", reply) or [""]
        finish: Literal["stop", "length"] = "stop"
        if params.max_tokens is not None and len(words) > params.max_tokens:
            words, finish = words[: params.max_tokens], "length"
        for i, word in enumerate(words):
            yield Delta(word, logprobs=[{
                "token": word, "logprob": self.token_logprobs[i % len(self.token_logprobs)],
                "bytes": list(word.encode()), "top_logprobs": []}]
                if params.logprobs and self.token_logprobs else None)
        yield Delta("", finish_reason=finish, prompt_tokens=prompt_tokens,
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
    local_files: bool = True,
) -> BackendContext:
    """A real :class:`BackendContext` on the fake model (or ``backend``), as a turn over the
    Unix socket has it (``local_files``; False: as over TCP)."""
    return BackendContext(backend or FakeBackend(), FAKE_MODEL, embedding_model=FAKE_EMBEDDING,
                          history=history, config=config, local_files=local_files)


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


# -- the daemon in this process, on the fake model ------------------------------------------

@dataclass
class InProcessDaemon:
    """The daemon's parts and app, started in this process by :func:`in_process_daemon`."""

    services: Services
    app: FastAPI  # the routes
    asgi: ASGIApp  # the routes inside the middleware, as the socket serves them
    backend: FakeBackend

    def http(self, **kwargs: Any) -> httpx.AsyncClient:
        """A client of the app as a Unix-socket peer sees it (no token needed)."""
        asgi = self.asgi

        async def unix_peer(scope: Any, receive: Any, send: Any) -> None:
            await asgi({**scope, "server": ("/tmp/assistant.sock", None)}, receive, send)

        return httpx.AsyncClient(transport=httpx.ASGITransport(app=unix_peer),
                                 base_url="http://assistant", **kwargs)

    async def events(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """POST ``body`` to a streaming route and return its server-sent events' data."""
        async with self.http() as http:
            response = await http.post(path, json=body)
        if response.status_code != 200:
            raise AssertionError(f"{path}: {response.status_code} {response.text}")
        return [json.loads(line[5:]) for line in response.text.splitlines()
                if line.startswith("data:")]


@contextlib.asynccontextmanager
async def in_process_daemon(
    settings: Settings, backend: FakeBackend | None = None, *, token: str | None = None,
    plugins: Mapping[str, object] | None = None,
) -> AsyncIterator[InProcessDaemon]:
    """Build the daemon as ``assistant serve`` does, with ``backend`` (a :class:`FakeBackend`
    by default) registered as a plugin, start it, and stop it afterwards. ``plugins`` (name →
    a module or object of ``@hookimpl`` functions) are registered beside the installed ones,
    as if installed: the plugin under test, without installing it (an installed plugin of the
    same name is left out).

    ``settings`` should point at temp dirs and name the fake models: ``models.default``
    ``fake`` and ``models.embedding`` ``fake-embed`` (the ``fake_settings`` fixture).
    """
    from assistant.daemon.api import build_app, with_middleware
    from assistant.daemon.server import build, start, stop
    from assistant.daemon.status import Access

    backend = backend or FakeBackend()
    host = PluginHost(settings.plugins)  # a host of its own: the fake is not left behind
    # A plugin given here replaces the installed one of its name (installed with -e, say).
    host.load_entry_points(skip=set(plugins or ()))
    host.register(FakeModelPlugin(backend), "fake-model")
    for name, plugin in (plugins or {}).items():
        host.register(plugin, name)
    services = build(settings, host, access=Access(token=token))
    app = build_app(services)
    await start(services)
    try:
        yield InProcessDaemon(services, app, with_middleware(app, services), backend)
    finally:
        await stop(services)


# -- a real daemon in a temp environment ---------------------------------------------------

@dataclass
class RunningDaemon:
    """A daemon process started by :func:`start_daemon`, and ways to talk to it."""

    proc: subprocess.Popen[bytes]
    runtime: Path
    log: Path
    env: dict[str, str]

    @property
    def socket(self) -> Path:
        return self.runtime / "assistant.sock"

    @property
    def data(self) -> Path:
        return Path(self.env["ASSISTANT_DATA_DIR"])

    def http(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)),
                            base_url="http://assistant", timeout=timeout)

    def async_http(self, timeout: float = 120.0, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(self.socket)),
                                 base_url="http://assistant", timeout=timeout, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def children(self) -> list[int]:
        """Pids of the daemon's child processes (the model host), read from /proc."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def core_variable(name: str) -> bool:
    """Whether environment variable ``name`` sets one of the daemon's own settings or locations
    (``ASSISTANT_DATA_DIR``, ``ASSISTANT_CONFIG``, ``ASSISTANT_MODELS__…``), rather than a
    plugin's (``ASSISTANT_SKILLS__<skill>__…``, or a variable of the plugin's own naming)."""
    if name in ENV_SHORTCUTS or name == "ASSISTANT_CONFIG":
        return True
    section, nested, _ = name.removeprefix("ASSISTANT_").partition("__")
    return name.startswith("ASSISTANT_") and bool(nested) and section.lower() in CORE_SECTIONS


CORE_SECTIONS = frozenset(Settings.model_fields) - {"skills"}


def daemon_environment(
    data_dir: Path, runtime_dir: Path, *, model: str | None = None,
    models_dir: Path | str | None = None, extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """This process's environment with every ``ASSISTANT_*`` location pointed at temp dirs.

    The daemon's own settings from this environment are left out (:func:`core_variable`), so
    that a developer's shell does not change the test; a plugin's own variables are kept.
    ``runtime_dir`` must be short: a Unix socket path has to stay under ~100 bytes.
    """
    env = {k: v for k, v in os.environ.items() if not core_variable(k)}
    env.update({
        "ASSISTANT_DATA_DIR": str(data_dir),
        "ASSISTANT_RUNTIME_DIR": str(runtime_dir),
        "XDG_CONFIG_HOME": str(data_dir.parent / "config"),
        "ASSISTANT_DAEMON__THREADS": "2",
        "ASSISTANT_MODELS__CONTEXT_LENGTH": "2048",
    })
    if models_dir is not None:
        env["ASSISTANT_MODELS_DIR"] = str(models_dir)
    if model is not None:
        env["ASSISTANT_MODEL"] = model
        # The bundled skills ship with models of their own: under test they use ``model`` too.
        for skill in ("TRANSLATE", "SUMMARIZE", "QA"):
            env[f"ASSISTANT_SKILLS__{skill}__MODEL"] = model
    env.update(extra_env or {})
    return env


def start_daemon(
    env: Mapping[str, str], log: Path, *args: str, timeout: float = 60.0,
    python: str | Path | None = None,
) -> RunningDaemon:
    """Start ``assistant serve`` with ``env`` (and the interpreter ``python``, by default this
    one) and wait until /health says it has started."""
    runtime = Path(env["ASSISTANT_RUNTIME_DIR"])
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(python or sys.executable), "-m", "assistant", "serve", *args],
            env=dict(env), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
        )
    daemon = RunningDaemon(proc, runtime, log, dict(env))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{daemon.log_text()}")
        if daemon.socket.exists():
            try:
                with daemon.http(5) as client:
                    health = client.get("/health")
                    if health.status_code == 200 and health.json()["status"] != "starting":
                        return daemon
            except httpx.TransportError:
                pass
        time.sleep(0.02)
    daemon.stop(signal.SIGKILL)
    raise AssertionError(f"daemon did not become healthy:\n{daemon.log_text()}")


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
    """Point the assistant's data, runtime and config dirs at a temp dir; the daemon's other
    settings from the environment are unset (:func:`core_variable`), a plugin's kept."""
    for name in [n for n in os.environ if core_variable(n)]:
        monkeypatch.delenv(name)
    env = {
        "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
        "ASSISTANT_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def fake_settings(assistant_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on temp dirs naming the fake models, for :func:`in_process_daemon`."""
    from assistant.config import load_settings

    monkeypatch.setenv("ASSISTANT_MODEL", FAKE_MODEL)
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", FAKE_EMBEDDING)
    return load_settings()


@pytest.fixture
def daemon_model() -> str | None:
    """The chat model ``temp_daemon`` uses by default; override this fixture to choose one."""
    return os.environ.get("ASSISTANT_MODEL")


@pytest.fixture
def temp_daemon(tmp_path: Path, daemon_model: str | None) -> Iterator[RunningDaemon]:
    """The real daemon on a temp data dir and a short temp runtime dir; stopped afterwards."""
    runtime = Path(tempfile.mkdtemp(prefix="as-", dir="/tmp"))
    try:
        env = daemon_environment(tmp_path / "data", runtime / "run", model=daemon_model,
                                 models_dir=os.environ.get("ASSISTANT_MODELS_DIR"))
        running = start_daemon(env, tmp_path / "daemon.log")
        yield running
        running.stop()
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
