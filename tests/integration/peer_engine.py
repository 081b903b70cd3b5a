"""A real peer engine for the remote-engine tests: llama-cpp-python's own OpenAI server
(``python -m llama_cpp.server``, its ``server`` extra a dev dependency) on a free loopback
port, serving smollm2-135m under a key.

Our llama.cpp build keeps its CPU code in per-CPU libraries that nothing loads by itself
(``assistant/models/cpu.py``), so the server runs as ``llama_cpp.server``'s ``__main__`` after
:func:`assistant.models.cpu.load`: the same server, on the CPU code the model host would use.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_MODELS_DIR

ALIAS = "smollm2-135m"
KEY = "peer-test-key"
LAUNCH = ("import runpy, sys; from assistant.models import cpu; cpu.load(); "
          "sys.argv[0] = 'llama_cpp.server'; "
          "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PeerEngine:
    """The server process, restartable on its port."""

    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def http(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout,
                            headers={"Authorization": f"Bearer {KEY}"})

    def start(self, timeout: float = 120.0) -> None:
        try:
            import llama_cpp.server.app  # noqa: F401  (its extra's packages are there)
        except ImportError as exc:
            pytest.fail(f"llama-cpp-python's server extra is missing ({exc}): `make install`")
        model = TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not model.exists():
            pytest.fail(f"{model} missing: run `make test-models`")
        root = str(Path(__file__).resolve().parents[2])
        # Unbuffered: what the server prints (a client that left) reaches the log at once.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, "--model", str(model), "--model_alias", ALIAS,
                 "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", "2",
                 "--n_ctx", "2048", "--api_key", KEY, "--verbose", "False",
                 # Else it cuts a streamed reply short (a bare [DONE]) whenever another request
                 # arrives, even the daemon's listing of /v1/models.
                 "--interrupt_requests", "False"],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        with self.http(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"the peer engine exited: {self.log.read_text()[-2000:]}")
                try:
                    if http.get("/models").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        pytest.fail(f"the peer engine did not answer in {timeout} s")

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user and system, its threads')."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL: gone at once, mid-reply, as a crashed or unplugged engine is."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
