"""The real model host driven over its protocol (JSON lines on stdin and stdout), as the
daemon's ``HostProcess`` drives it, with the real smollm2-135m."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from tests.conftest import TEST_MODELS_DIR

MODEL = str(TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf")
WAIT = 900.0  # for any one reply: a full read takes minutes on a loaded 2-core machine


class Host:
    """The model host, run as the daemon runs it."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.models.host"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        self._replies: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._next = 0
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            message = json.loads(line)
            self._replies[str(message.get("id"))].put(message)

    def send(self, op: str, **fields: Any) -> str:
        self._next += 1
        rid = str(self._next)
        self._replies[rid] = queue.Queue()
        self.write({"id": rid, "op": op, **fields})
        return rid

    def write(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def result(self, rid: str) -> dict[str, Any]:
        reply = self._replies[rid].get(timeout=WAIT)
        assert "ok" in reply, reply
        result: dict[str, Any] = reply["ok"]
        return result

    def finish(self, rid: str) -> tuple[str, dict[str, Any]]:
        """The text of chat ``rid`` and its ``done``."""
        text = ""
        while True:
            reply = self._replies[rid].get(timeout=WAIT)
            assert "error" not in reply, reply
            if "done" in reply:
                done: dict[str, Any] = reply["done"]
                return text, done
            text += reply["delta"]

    def load(self, name: str = "smollm2", n_ctx: int = 4096, parallel: int = 1) -> None:
        self.result(self.send("load", model=name, path=MODEL, n_ctx=n_ctx, n_threads=2,
                              parallel=parallel))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self._log.close()
