"""The OpenAI clients people use, unchanged, against the real daemon on smollm2: langchain-openai,
instructor and simonw's ``llm`` CLI, each over loopback TCP with the token as a user would set
them up, each structured reply parsed and validated (issue 16).

One daemon serves the module; every test is a request or two to it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from assistant.testing import RunningDaemon, daemon_environment
from tests.conftest import TEST_MODELS_DIR
from tests.integration.conftest import CHAT_MODEL, start_daemon
from tests.integration.test_structured_output import ASK, PERSON, is_person

pytestmark = pytest.mark.integration

# Short and greedy: a person fits in well under this many tokens.
MAX_TOKENS = 120


class Person(BaseModel):
    """PERSON of test_structured_output, as the pydantic model a client would be given."""

    name: str = Field(max_length=40)
    age: int
    role: Literal["pilot", "cook", "doctor"]


@dataclass
class Served:
    daemon: RunningDaemon
    base_url: str  # http://127.0.0.1:PORT/v1
    token: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("clients")
    runtime = Path(tempfile.mkdtemp(prefix="ac-", dir="/tmp"))  # short: a Unix socket path
    port = free_port()
    env = daemon_environment(base / "data", runtime / "run", model=CHAT_MODEL,
                             models_dir=TEST_MODELS_DIR)
    daemon = start_daemon(env, base / "daemon.log", "--tcp", f"127.0.0.1:{port}")
    try:
        token = (daemon.runtime / "token").read_text().strip()
        yield Served(daemon, f"http://127.0.0.1:{port}/v1", token)
    finally:
        daemon.stop()
        shutil.rmtree(runtime, ignore_errors=True)


# -- langchain-openai ----------------------------------------------------------------------

def test_langchain_structured_output_is_a_valid_pydantic_model(served: Served) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=CHAT_MODEL, base_url=served.base_url, api_key=served.token,
                      max_tokens=MAX_TOKENS, temperature=0, seed=1, max_retries=0,
                      stream_usage=True)
    person = chat.with_structured_output(Person, method="json_schema").invoke(
        ASK[0]["content"])
    assert isinstance(person, Person), person
    chunks = list(chat.stream("Say hello.", max_tokens=16))  # with `stream_options`
    assert "".join(str(c.content) for c in chunks).strip()
    assert any(c.usage_metadata and c.usage_metadata["output_tokens"] > 0 for c in chunks)


# -- instructor ----------------------------------------------------------------------------

def test_instructor_json_schema_mode_returns_a_validated_model(served: Served) -> None:
    import instructor

    client = instructor.from_openai(
        openai.OpenAI(base_url=served.base_url, api_key=served.token, max_retries=0),
        mode=instructor.Mode.JSON_SCHEMA)
    person = client.chat.completions.create(
        model=CHAT_MODEL, response_model=Person, messages=ASK,  # type: ignore[arg-type]
        max_tokens=MAX_TOKENS, temperature=0, seed=1, max_retries=0)
    assert isinstance(person, Person), person


# -- llm (simonw/llm), the CLI ---------------------------------------------------------------

@pytest.fixture
def llm_cli(served: Served, tmp_path: Path) -> Callable[..., str]:
    """Run ``llm`` with a user dir of its own holding the daemon as an OpenAI-compatible model
    (``extra-openai-models.yaml``) and the token as that model's key (``llm keys set``)."""
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(
        "- model_id: assistant\n"
        f"  model_name: {CHAT_MODEL}\n"
        f"  api_base: {served.base_url}\n"
        "  api_key_name: assistant\n"
        "  supports_schema: true\n")
    exe = Path(sys.executable).parent / "llm"
    env = {k: v for k, v in served.daemon.env.items() if k != "OPENAI_API_KEY"}
    env["LLM_USER_PATH"] = str(home)

    def run(*args: str) -> str:
        done = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("keys", "set", "assistant", "--value", served.token)
    return run


def test_llm_cli_prompt_and_schema(llm_cli: Callable[..., str]) -> None:
    options = ["-m", "assistant", "-o", "temperature", "0", "-o", "seed", "1"]
    text = llm_cli("prompt", *options, "-o", "max_tokens", "16", "Say hello.")
    assert text.strip()
    reply = llm_cli("prompt", *options, "-o", "max_tokens", str(MAX_TOKENS),
                    "--schema", json.dumps(PERSON), ASK[0]["content"])
    assert is_person(json.loads(reply)), reply


# -- tool calls ----------------------------------------------------------------------------
# langchain `bind_tools` and `with_structured_output(method="function_calling")`, instructor
# `Mode.TOOLS` and `llm --tool` belong here once the daemon takes `tools` (issue 16); until
# then a `tools` request is a 400 (test_structured_output.py).
