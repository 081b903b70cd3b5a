"""The OpenAI clients people use, unchanged, against the real daemon on smollm2: langchain-openai,
instructor and simonw's ``llm`` CLI, each over loopback TCP with the token as a user would set
them up, each structured reply parsed and validated (issue 16).

One daemon serves the module; every test is a few requests to it.
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
from typing import Any, Literal

import httpx
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

@pytest.mark.parametrize("mode", ["JSON_SCHEMA", "TOOLS"])
def test_instructor_returns_a_validated_model(served: Served, mode: str) -> None:
    import instructor

    client = instructor.from_openai(
        openai.OpenAI(base_url=served.base_url, api_key=served.token, max_retries=0),
        mode=instructor.Mode[mode])
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
        "  supports_schema: true\n"
        "  supports_tools: true\n")
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
# smollm2 rarely calls a tool unasked, so each call here is forced (a named `tool_choice`, which
# the daemon shapes with a grammar): what is tested is that the client's own requests and
# message shapes are taken and its replies parse.

WEATHER = {"temperature": 18, "sky": "clear"}


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
    """The weather now in a city."""
    return json.dumps(WEATHER)


def recording(bodies: list[dict[str, Any]]) -> httpx.Client:
    """An httpx client that keeps each JSON request body it sends, to check what a client
    asked for."""
    def keep(request: httpx.Request) -> None:
        bodies.append(json.loads(request.content))
    return httpx.Client(event_hooks={"request": [keep]})


def test_langchain_function_calling_and_a_bind_tools_loop(served: Served) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    sent: list[dict[str, Any]] = []
    chat = ChatOpenAI(model=CHAT_MODEL, base_url=served.base_url, api_key=served.token,
                      max_tokens=MAX_TOKENS, temperature=0, seed=1, max_retries=0,
                      http_client=recording(sent))
    person = chat.with_structured_output(Person, method="function_calling").invoke(
        ASK[0]["content"])
    assert isinstance(person, Person), person
    assert sent[-1]["tool_choice"] == {"type": "function", "function": {"name": "Person"}}

    weather = tool(get_weather)
    messages: list[Any] = [HumanMessage("What is the weather in Paris, in celsius?")]
    called = chat.bind_tools([weather], tool_choice="get_weather",
                             parallel_tool_calls=False).invoke(messages)
    assert isinstance(called, AIMessage) and len(called.tool_calls) == 1, called
    call = called.tool_calls[0]
    assert call["name"] == "get_weather" and call["args"]["unit"] in ("celsius", "fahrenheit")
    result = weather.invoke(call)
    assert isinstance(result, ToolMessage) and result.tool_call_id == call["id"]
    messages += [called, result]
    answer = chat.bind_tools([weather]).invoke(messages, max_tokens=40)
    assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant", "tool"]
    # With the default `auto` the model chooses: an answer, or another well-formed call.
    assert isinstance(answer, AIMessage)
    assert answer.content or all(c["name"] == "get_weather" for c in answer.tool_calls), answer


FUNCTIONS = f"""
def get_weather(city: str, unit: str) -> str:
    "The weather now in a city."
    return {json.dumps(json.dumps(WEATHER))}
"""


def test_llm_cli_offers_a_tool_and_the_daemon_takes_it(llm_cli: Callable[..., str]) -> None:
    # llm 0.36 sends no `tool_choice` (its options forbid one), and smollm2 unforced answers in
    # prose, so a call and llm's tool-result request are not reached here: this is the offer.
    text = llm_cli("prompt", "-m", "assistant", "-o", "temperature", "0", "-o", "seed", "1",
                   "-o", "max_tokens", "16", "--functions", FUNCTIONS,
                   "What is the weather in Paris, in celsius?")
    [logged] = json.loads(llm_cli("logs", "-n", "1", "--json"))
    assert [t["name"] for t in logged["tools"]] == ["get_weather"]
    assert text.strip() or logged["tool_calls"], logged
