"""The real `assistant` command in a real terminal (tmux): ask, watch the answer stream, then
find it through search from a new conversation. The command starts the daemon itself."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_MODELS_DIR

pytestmark = pytest.mark.integration

QUESTION = "What colour is the sky on a clear day?"


class Terminal:
    def __init__(self, server: str, session: str) -> None:
        self.server, self.session = server, session

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.server, *args], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.session, "-l", text)

    def wait(self, predicate: Callable[[str], bool], what: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if predicate(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{shown}")
            time.sleep(0.2)


@pytest.fixture
def terminal() -> Iterator[tuple[Terminal, dict[str, str], Path]]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed; this test drives the UI in it: "
                    "`apt-get install -y tmux` (a `make test` prerequisite)")
    tmp = Path(tempfile.mkdtemp(prefix="as-e2e-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update({
        "ASSISTANT_DATA_DIR": str(tmp / "data"), "ASSISTANT_RUNTIME_DIR": str(tmp / "run"),
        "ASSISTANT_MODELS_DIR": str(TEST_MODELS_DIR), "XDG_CONFIG_HOME": str(tmp / "config"),
        "ASSISTANT_MODEL": "smollm2-135m", "ASSISTANT_DAEMON__THREADS": "2",
        "ASSISTANT_TUI__MAX_TOKENS": "32", "TERM": "xterm-256color",
        "ASSISTANT_PLUGINS__SKILL_TIMEOUT": "600",
    })
    command = str(Path(sys.executable).parent / "assistant")
    term = Terminal(f"as-e2e-{os.getpid()}", "ui")
    exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items() if k.startswith(
        ("ASSISTANT_", "XDG_", "TERM", "PYTHONPATH")))
    subprocess.run(["tmux", "-L", term.server, "-f", "/dev/null", "new-session", "-d",
                    "-s", term.session, "-x", "80", "-y", "24", "-c", str(tmp),
                    f"env {exports} {command}; sleep 600"], check=True, env=env, timeout=30)
    try:
        yield term, env, tmp
    finally:
        subprocess.run(["tmux", "-L", term.server, "kill-server"], capture_output=True,
                       timeout=30)
        pid_file = tmp / "run" / "assistant.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            deadline = time.monotonic() + 20
            while (tmp / "run" / "assistant.sock").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(tmp, ignore_errors=True)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def test_ask_see_the_streamed_answer_and_find_it_from_a_new_conversation(
        terminal: tuple[Terminal, dict[str, str], Path]) -> None:
    term, _env, _tmp = terminal
    term.wait(lambda s: "ready │ smollm2-135m" in s, "the daemon to start and the UI to be ready",
              timeout=120)
    term.type(QUESTION)
    term.keys("Enter")
    streaming = term.wait(lambda s: "generating…" in s, "the reply to start")
    assert QUESTION in streaming
    done = term.wait(lambda s: "tok/s" in s and "generating" not in s, "the reply to finish",
                     timeout=120)
    lines = done.splitlines()
    # A long reply may scroll the question off the top; then the whole transcript is answer.
    header = next((i for i, line in enumerate(lines) if "▕ you" in line), None)
    start = 0 if header is None else header + 3
    answer = [line.split("▕", 1)[1].strip() for line in lines[start:-4] if "▕" in line]
    assert any(answer), f"no answer under the question:\n{done}"
    # The question is also listed in the sidebar, titled after the question.
    assert "What colour is the" in done.split("▕")[0] or "What colour" in done

    term.keys("C-n")
    term.wait(lambda s: "Ask anything." in s, "a new, empty conversation")
    term.keys("C-f")
    term.wait(lambda s: "Search all history" in s, "the search screen")
    term.type("colour sky")
    found = term.wait(lambda s: "result" in s and "clear day" in s, "the search hit")
    assert "What colour is the sky" in found
    term.keys("Enter")
    time.sleep(0.3)
    term.keys("Enter")
    reopened = term.wait(lambda s: "Search all history" not in s and QUESTION in s,
                         "the conversation to open from the hit")
    assert "tok/s" in reopened
