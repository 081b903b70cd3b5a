"""The terminal UI against the real daemon with the real smollm2-135m.

Each test module gets one daemon (starting one costs seconds) with its own data and runtime
dirs, seeded with a few fixed conversations through ``POST /api/import``; the app is built
from settings read from that daemon's environment.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assistant.config import Settings, load_settings
from tests.conftest import TEST_MODELS_DIR
from tests.integration.conftest import RunningDaemon, start_daemon

SEED_TITLES = ("Rust ownership notes", "Translating a poem", "Weekend plans")


def message(mid: str, parent: str | None, role: str, content: str, minute: int,
            skill: str | None = None) -> dict[str, Any]:
    """A message as ``POST /api/import`` takes it; a ``skill`` gives it a route too."""
    second = "qa" if skill == "chat" else "chat"
    route = None if skill is None else {
        "method": "semantic", "skill": skill, "score": 0.71, "runner_up": second,
        "runner_up_score": 0.42, "explanation": f"closest examples are {skill}'s",
        "text": content, "scores": {skill: 0.71, second: 0.42}}
    return {
        "id": mid, "parent_id": parent, "role": role, "content": content,
        "status": "complete", "skill": skill, "route": route,
        "model": "smollm2-135m" if role == "assistant" else None,
        "prompt_tokens": 20 if role == "assistant" else 0,
        "completion_tokens": 30 if role == "assistant" else 0,
        "timings": {"tokens_per_s": 50.0} if role == "assistant" else {},
        "created": f"2024-01-0{minute // 10 + 1}T10:{minute % 60:02d}:00+00:00",
    }


def _conversation(cid: str, title: str, messages: list[dict[str, Any]], leaf: str, day: int,
                  pinned: bool = False) -> dict[str, Any]:
    return {
        "id": cid, "title": title, "created": f"2024-01-0{day}T09:00:00+00:00",
        "updated": f"2024-01-0{day}T11:00:00+00:00", "archived": False, "pinned": pinned,
        "model": "smollm2-135m", "settings": {}, "active_leaf_id": leaf, "messages": messages,
    }


def seed_document() -> dict[str, Any]:
    """Three conversations: a pinned one with a code block, one with two branches, a plain one."""
    rust = _conversation("c0rust", SEED_TITLES[0], [
        message("m0r1", None, "user", "How do I borrow a vector in Rust?", 1),
        message("m0r2", "m0r1", "assistant",
                 "Borrow it with a reference:\n\n```rust\nfn total(v: &Vec<i32>) -> i32 {\n"
                 "    v.iter().sum()\n}\n```\n\nThe caller keeps ownership.", 2, "chat"),
    ], "m0r2", 1, pinned=True)
    poem = _conversation("c1poem", SEED_TITLES[1], [
        message("m1p1", None, "user", "/translate Le ciel est bleu", 11),
        message("m1p2", "m1p1", "assistant", "The sky is blue.", 12, "translate"),
        message("m1p3", "m1p1", "assistant", "The heaven is blue.", 13, "translate"),
    ], "m1p3", 2)
    plans = _conversation("c2plan", SEED_TITLES[2], [
        message("m2w1", None, "user", "Suggest a hiking trail near the lake", 21),
        message("m2w2", "m2w1", "assistant", "Try the north shore loop.", 22, "chat"),
    ], "m2w2", 3)
    return {"format": "assistant-conversations", "version": 1,
            "exported": "2024-01-05T00:00:00+00:00", "conversations": [rust, poem, plans]}


def import_conversation(tui_daemon: TuiDaemon, cid: str, title: str,
                        messages: list[dict[str, Any]], leaf: str, day: int) -> None:
    document = {"format": "assistant-conversations", "version": 1,
                "exported": "2024-01-05T00:00:00+00:00",
                "conversations": [_conversation(cid, title, messages, leaf, day)]}
    with tui_daemon.daemon.http() as http:
        response = http.post("/api/import", content=json.dumps(document))
        assert response.status_code == 200, response.text


@dataclass
class TuiDaemon:
    daemon: RunningDaemon
    env: dict[str, str]

    def settings(self, **environ: str) -> Settings:
        return load_settings(environ={**self.env, **environ})

    def get(self, path: str, **params: Any) -> Any:
        with self.daemon.http() as http:
            response = http.get(path, params=params)
            response.raise_for_status()
            return response.json()


def start_tui_daemon(tmp: Path, extra_env: dict[str, str] | None = None) -> TuiDaemon:
    """A daemon on ``tmp``, seeded, its environment ``extra_env`` added; stop it when done."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update({
        "ASSISTANT_DATA_DIR": str(tmp / "data"),
        "ASSISTANT_RUNTIME_DIR": str(tmp / "run"),
        "ASSISTANT_MODELS_DIR": str(TEST_MODELS_DIR),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "ASSISTANT_MODEL": "smollm2-135m",
        "ASSISTANT_DAEMON__THREADS": "2",
        "ASSISTANT_MODELS__CONTEXT_LENGTH": "2048",
        "ASSISTANT_PLUGINS__SKILL_TIMEOUT": "600",
        **(extra_env or {}),
    })
    daemon = start_daemon(env, tmp / "daemon.log")
    with daemon.http() as http:
        deadline = time.monotonic() + 120
        while http.get("/health").json()["status"] == "starting":
            if time.monotonic() > deadline:
                daemon.stop()
                raise AssertionError(f"daemon never became ready:\n{daemon.log_text()}")
            time.sleep(0.1)
        response = http.post("/api/import", content=json.dumps(seed_document()))
        assert response.status_code == 200, response.text
    return TuiDaemon(daemon, env)


@pytest.fixture(scope="module")
def tui_daemon() -> Iterator[TuiDaemon]:
    tmp = Path(tempfile.mkdtemp(prefix="as-tui-", dir="/tmp"))
    running = start_tui_daemon(tmp)
    try:
        yield running
    finally:
        running.daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def wait_for(pilot: Any, predicate: Callable[[], object], timeout: float = 60.0,
                   what: str = "condition") -> None:
    """Let the app run until ``predicate()`` holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
