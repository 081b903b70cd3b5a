"""The real daemon, started as users start it, on a temp socket with the real smollm2-135m."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_MODELS_DIR

CHAT_MODEL = "smollm2-135m"
EMBED_MODEL = "minilm-l6"


def _require_models() -> None:
    needed = ["SmolLM2-135M-Instruct.Q4_1.gguf", "all-MiniLM-L6-v2.int8.onnx"]
    missing = [n for n in needed if not (TEST_MODELS_DIR / n).exists()]
    if missing:
        pytest.fail(f"test models missing in {TEST_MODELS_DIR}: run `make test-models`")


@dataclass
class RunningDaemon:
    proc: subprocess.Popen[bytes]
    runtime: Path
    log: Path
    env: dict[str, str]

    @property
    def socket(self) -> Path:
        return self.runtime / "assistant.sock"

    def http(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)),
                            base_url="http://assistant", timeout=timeout)

    def async_http(self, timeout: float = 120.0, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(self.socket)),
                                 base_url="http://assistant", timeout=timeout, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_daemon(env: dict[str, str], log: Path, *args: str) -> RunningDaemon:
    _require_models()
    runtime = Path(env["ASSISTANT_RUNTIME_DIR"])
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "assistant", "serve", *args],
            env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
        )
    daemon = RunningDaemon(proc, runtime, log, env)
    deadline = time.monotonic() + 60
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
        time.sleep(0.05)
    daemon.stop(signal.SIGKILL)
    raise AssertionError(f"daemon did not become healthy:\n{daemon.log_text()}")


@pytest.fixture
def daemon_env(isolated_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(isolated_env)
    env["ASSISTANT_DAEMON__THREADS"] = "2"
    env["ASSISTANT_MODELS__CONTEXT_LENGTH"] = "2048"
    return env


@pytest.fixture
def daemon(daemon_env: dict[str, str], tmp_path: Path) -> Iterator[RunningDaemon]:
    running = start_daemon(daemon_env, tmp_path / "daemon.log")
    yield running
    running.stop()
