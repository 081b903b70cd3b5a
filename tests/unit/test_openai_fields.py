"""Every field of OpenAI's request types, as the installed ``openai`` SDK defines them, sent to
the daemon in this process (fake model) with a value that asks for something. Each must be
honoured (a 200 that differs from the same request without it: in what the model was given or
in the answer), taken and ignored for a reason the daemon states, or refused with a 400 naming
it. None may be taken silently.

The fields are read from the SDK's TypedDicts, so a field a later SDK adds is walked too: with a
value its type suggests, and it must be refused by name until the tables here say otherwise.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import typing_extensions
from openai.types import completion_create_params as completion_params
from openai.types.chat import completion_create_params as chat_params
from openai.types.shared_params import FunctionDefinition
from openai.types.shared_params.response_format_json_schema import JSONSchema

from assistant.daemon.openai_api import IGNORED, Message
from assistant.testing import FAKE_MODEL, InProcessDaemon

# honoured: a 200 that differs from the request without it; ignored: a 200 that does not, for
# a reason the daemon states (openai_api.IGNORED, or ``why``); refused: a 400 naming it;
# either: honoured or refused; silent: taken silently today, a bug reported (``why``): the walk
# fails once it is fixed, to have the table say what it does then.
Expect = Literal["honoured", "ignored", "refused", "either", "silent"]


@dataclass(frozen=True)
class Probe:
    """A value to send for a field, what the daemon should do with it, and other fields the
    value needs beside it (sent in the request it is compared with too: a sub-field's probe
    sends its parent there without it)."""

    value: Any
    expect: Expect
    beside: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""


Probes = Probe | list[Probe]


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
A_CALL = {"id": "call_1", "type": "function",
          "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
    "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}


def _schema(**fields: Any) -> dict[str, Any]:
    return {**SCHEMA, "json_schema": {**SCHEMA["json_schema"], **fields}}


def _weather(**fields: Any) -> list[dict[str, Any]]:
    return [{**WEATHER, "function": {**WEATHER["function"], **fields}}]


# n > 1, logprobs/top_logprobs and logit_bias: the fake model declares none of them
# (Backend.choices, logprobs, logit_bias), so it refuses them by name; the model host honours
# them (tests/integration/test_openai_sampling.py).
FAKE_LACKS = "the fake model declares none (the real one: test_openai_sampling.py)"
SAMPLING: dict[str, Probes] = {
    "frequency_penalty": Probe(0.5, "honoured"),
    "logit_bias": Probe({"50256": -100}, "refused", why=FAKE_LACKS),
    "max_tokens": Probe(2, "honoured"),
    "n": Probe(2, "refused", why=FAKE_LACKS),
    "presence_penalty": Probe(0.5, "honoured"),
    "seed": Probe(7, "honoured"),
    "stop": Probe(["\n\n"], "honoured"),
    "stream": Probe(True, "honoured"),
    "stream_options": [
        Probe({"include_usage": True}, "honoured", {"stream": True}),
        Probe({"include_usage": True}, "refused", why="stream_options without stream"),
        Probe({"include_usage": True, "include_obfuscation": True}, "honoured",
              {"stream": True, "stream_options": {"include_usage": True}}),
    ],
    "temperature": Probe(0.2, "honoured"),
    "top_p": Probe(0.5, "honoured"),
    "user": Probe("user-1", "ignored"),
}
CHAT: dict[str, Probes] = {
    **SAMPLING,
    "audio": Probe({"voice": "alloy", "format": "wav"}, "refused"),
    "function_call": Probe("auto", "refused"),
    "functions": Probe([WEATHER["function"]], "refused"),
    "logprobs": Probe(True, "refused", why=FAKE_LACKS),
    "max_completion_tokens": Probe(2, "honoured"),
    "metadata": Probe({"project": "walk"}, "ignored"),
    "modalities": Probe(["text", "audio"], "refused"),
    "moderation": Probe({"model": "omni-moderation-latest"}, "refused"),
    "parallel_tool_calls": Probe(False, "honoured", {"tools": [WEATHER]}),
    "prediction": Probe({"type": "content", "content": "Hello"}, "refused"),
    "prompt_cache_key": Probe("walk", "ignored"),
    "prompt_cache_options": Probe({"mode": "explicit", "ttl": "30m"}, "refused"),
    "prompt_cache_retention": Probe("24h", "refused"),
    "reasoning_effort": Probe("low", "refused"),
    "response_format": [
        Probe(SCHEMA, "honoured"),
        Probe(_schema(strict=True), "ignored", {"response_format": SCHEMA},
              why="every schema is enforced, strict or not (docs/api.md)"),
        Probe(_schema(description="One short answer."), "ignored",
              {"response_format": SCHEMA},
              why="the grammar enforces the schema; the model is not shown it (docs/api.md)"),
    ],
    "safety_identifier": Probe("user-1", "ignored"),
    "service_tier": Probe("flex", "ignored"),
    "store": Probe(True, "ignored"),
    "tool_choice": [
        Probe({"type": "function", "function": {"name": "get_weather"}}, "honoured",
              {"tools": [WEATHER]}),
        Probe("none", "ignored", why="without tools it asks for nothing (docs/api.md)"),
    ],
    "tools": [
        Probe([WEATHER], "honoured"),
        Probe(_weather(description="The weather now."), "honoured", {"tools": [WEATHER]}),
        Probe(_weather(strict=True), "honoured", {"tools": [WEATHER]}),
    ],
    "top_logprobs": Probe(2, "refused", why="needs logprobs true"),
    "verbosity": Probe("low", "refused"),
    "web_search_options": Probe({"search_context_size": "low"}, "refused"),
}
COMPLETIONS: dict[str, Probes] = {
    **SAMPLING,
    "best_of": Probe(2, "refused"),
    "echo": Probe(True, "refused"),
    "logprobs": Probe(2, "refused", why=FAKE_LACKS),
    "suffix": Probe(" The end.", "refused"),
}

# A message of each role, as small as the SDK allows, and where it goes in a conversation.
MESSAGES: dict[str, dict[str, Any]] = {
    "developer": {"role": "developer", "content": "Be brief."},
    "system": {"role": "system", "content": "Be brief."},
    "user": {"role": "user", "content": "Walk on."},
    "assistant": {"role": "assistant", "content": "Hello."},
    "tool": {"role": "tool", "content": "20 C", "tool_call_id": "call_1"},
    "function": {"role": "function", "content": "20 C", "name": "get_weather"},
}
USER = {"role": "user", "content": "hi"}
BEFORE = {"developer": [], "system": [], "user": [], "assistant": [USER],
          "tool": [USER, {"role": "assistant", "content": None, "tool_calls": [A_CALL]}],
          "function": [USER]}
AFTER = {"developer": [USER], "system": [USER], "assistant": [USER]}
TEXT_PARTS = Probe([{"type": "text", "text": "Walk the "}, {"type": "text", "text": "schema."}],
                   "honoured")
# A message's fields, by name; (role, name) for one role's own.
MESSAGE_FIELDS: dict[str | tuple[str, str], Probes] = {
    "role": Probe(None, "honoured"),  # the message itself, as small as it can be
    ("function", "role"): Probe(None, "refused"),  # OpenAI's deprecated function results
    "content": TEXT_PARTS,
    ("user", "content"): [TEXT_PARTS, Probe([{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,iVBORw0KGgo="}}], "refused")],
    ("assistant", "content"): [TEXT_PARTS, Probe([{"type": "refusal", "refusal": "No."}],
                                                 "refused")],
    "name": Probe("alice", "ignored"),
    ("assistant", "audio"): Probe({"id": "audio_1"}, "refused"),
    ("assistant", "function_call"): Probe({"name": "get_weather", "arguments": "{}"}, "refused"),
    ("assistant", "refusal"): Probe("I cannot help with that.", "refused"),
    ("assistant", "tool_calls"): Probe([A_CALL], "honoured"),
    ("tool", "tool_call_id"): Probe("call_2", "honoured", {"tool_calls": [
        A_CALL, {**A_CALL, "id": "call_2"}]}),
}
# Fields of a field, walked by the probes above: each must be a key of one of its probes'
# values (a sub-field a later SDK adds fails the walk until it has a probe).
SUB_FIELDS = {
    ("stream_options",): chat_params.ChatCompletionStreamOptionsParam,
    ("response_format", "json_schema"): JSONSchema,
    ("tools", "function"): FunctionDefinition,
}


def test_the_tables_name_only_fields_the_sdk_has() -> None:
    chat = fields(chat_params.CompletionCreateParamsStreaming)
    completions = fields(completion_params.CompletionCreateParamsStreaming)
    assert CHAT.keys() <= chat.keys(), CHAT.keys() - chat.keys()
    assert COMPLETIONS.keys() <= completions.keys(), COMPLETIONS.keys() - completions.keys()
    roles = {role_of(t): fields(t) for t in message_types()}
    assert MESSAGES.keys() == roles.keys(), "a message role to add to (or drop from) MESSAGES"
    for key in MESSAGE_FIELDS:
        if isinstance(key, tuple):
            assert key[1] in roles[key[0]], key


def test_every_sub_field_has_a_probe() -> None:
    for path, kind in SUB_FIELDS.items():
        probed = set()
        for probe in _listed(CHAT[path[0]]):
            value = probe.value
            for part in path[1:]:
                value = (value[0] if isinstance(value, list) else value)[part]
            probed |= set(value)
        missing = fields(kind).keys() - probed
        assert not missing, f"{'.'.join(path)}: add a probe of {sorted(missing)} to CHAT"


@pytest.mark.asyncio
async def test_every_chat_field_is_honoured_or_refused_by_name(
        fake_daemon: InProcessDaemon) -> None:
    fake_daemon.backend.tools = True  # takes tools (and answers in text): they reach the model
    base = {"model": FAKE_MODEL, "messages": [USER]}
    problems = await walk(fake_daemon, "/v1/chat/completions", base,
                          fields(chat_params.CompletionCreateParamsStreaming), CHAT)
    assert not problems, "\n".join(problems)


@pytest.mark.asyncio
async def test_every_completions_field_is_honoured_or_refused_by_name(
        fake_daemon: InProcessDaemon) -> None:
    base = {"model": FAKE_MODEL, "prompt": "Once upon a time"}
    problems = await walk(fake_daemon, "/v1/completions", base,
                          fields(completion_params.CompletionCreateParamsStreaming), COMPLETIONS)
    assert not problems, "\n".join(problems)


@pytest.mark.asyncio
async def test_every_message_field_is_honoured_or_refused_by_name(
        fake_daemon: InProcessDaemon) -> None:
    fake_daemon.backend.tools = True
    problems = []
    for kind in message_types():
        role = role_of(kind)
        if role not in MESSAGES:
            problems.append(f"messages: the SDK has a {kind.__name__} (role {role!r}): add a "
                            "message of that role to MESSAGES, BEFORE and AFTER")
            continue
        for name, hint in fields(kind).items():
            probes = MESSAGE_FIELDS.get((role, name), MESSAGE_FIELDS.get(name))
            if name != "role" and _refused(MESSAGE_FIELDS.get((role, "role"))):
                continue  # the whole message is refused, whatever its fields
            for probe in _listed(probes):
                problems += await _walk_message(fake_daemon, role, name, hint, probe)
    assert not problems, "\n".join(problems)


def _refused(probe: Probes | None) -> bool:
    return isinstance(probe, Probe) and probe.expect == "refused"


def _listed(probes: Probes | None) -> list[Any]:
    """``probes`` as a list (a field no table names: ``[None]``)."""
    return probes if isinstance(probes, list) else [probes]


async def _walk_message(daemon: InProcessDaemon, role: str, name: str, hint: Any,
                        probe: Probe | None) -> list[str]:
    def conversation(message: dict[str, Any]) -> dict[str, Any]:
        before = list(BEFORE[role])
        if probe is not None and probe.beside and before:
            before[-1] = {**before[-1], **probe.beside}
        return {"model": FAKE_MODEL, "messages": [*before, message, *AFTER.get(role, [])]}

    minimal = MESSAGES[role]
    label = f"messages[role={role}].{name}"
    if probe is not None and name == "role":  # the message as it is, against no message
        base = {"model": FAKE_MODEL, "messages": [*BEFORE[role], *AFTER.get(role, [USER])]}
        return await check(daemon, "/v1/chat/completions", label, "messages", base,
                           conversation(minimal), probe.expect)
    if probe is None:
        probe = _guess(hint)
        if probe is None:
            return [f"{label}: add a value for it to MESSAGE_FIELDS (the walk cannot make one "
                    f"of type {hint})"]
    return await check(daemon, "/v1/chat/completions", label, "messages",
                       conversation(minimal), conversation({**minimal, name: probe.value}),
                       probe.expect)


async def walk(daemon: InProcessDaemon, path: str, base: dict[str, Any],
               sdk_fields: dict[str, Any], table: Mapping[str, Probes]) -> list[str]:
    """Problems found sending each of ``sdk_fields`` beside ``base`` (whose fields are the
    request's own, not walked)."""
    problems = []
    for name, hint in sdk_fields.items():
        if name in base:
            continue
        for probe in _listed(table.get(name)) if name in table else [_guess(hint)]:
            if probe is None:
                problems.append(f"{name}: new in the openai SDK; add a value for it to the "
                                f"walk's table (it cannot make one of type {hint})")
                continue
            if probe.expect == "ignored" and name not in IGNORED and not probe.why:
                problems.append(f"{name}: the table says ignored, but openai_api.IGNORED "
                                "gives no reason for it")
            without = {**base, **probe.beside}
            problems += await check(daemon, path, name, name, without,
                                    {**without, name: probe.value}, probe.expect)
    return problems


async def check(daemon: InProcessDaemon, path: str, label: str, param: str,
                without: dict[str, Any], with_it: dict[str, Any], expect: Expect) -> list[str]:
    """Whether the request ``with_it`` (``without`` and the field ``label``) is answered as
    ``expect`` says; what went wrong, else nothing."""
    before = await _answer(daemon, path, without)
    if before[0] != 200:
        return [f"{label}: the request without it failed: {before[0]} {before[1]}"]
    after = await _answer(daemon, path, with_it)
    status, body = after[0], after[1]
    sent = f"sent {json.dumps(with_it)[:300]}"
    if status == 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        named = error.get("param") == param or str(error.get("param", "")).startswith(
            f"{param}.")
        named = named and (param == label or label.rsplit(".", 1)[-1] in error["message"])
        if not named or error.get("code") not in ("unsupported_parameter", "invalid_request"):
            return [f"{label}: a 400 that does not name it: {error}; {sent}"]
        if expect in ("refused", "either"):
            return []
        return [f"{label}: refused ({error.get('message')}), the table says {expect}: update "
                f"it (and docs/api.md); {sent}"]
    if status != 200:
        return [f"{label}: {status} {body}; {sent}"]
    changed = after[2:] != before[2:]
    if expect == "silent":
        return [] if not changed else [f"{label}: no longer taken silently: say what it does "
                                       f"in the table; {sent}"]
    if expect == "either" or (expect == "honoured" and changed):
        return []
    if expect == "ignored" and not changed:
        return []
    if expect == "ignored":
        return [f"{label}: the table says ignored, but it changed what the model was given "
                f"or the answer: say honoured (and in docs/api.md); {sent}"]
    return [f"{label}: taken silently (200, and nothing differs from the same request "
            f"without it; the table says {expect}): honour it or refuse it by name; {sent}"]


async def _answer(daemon: InProcessDaemon, path: str, body: dict[str, Any]) -> tuple[Any, ...]:
    """The status, the body, and what shows a field was honoured: the answer (but its id and
    time) and what the fake model was given."""
    backend = daemon.backend
    seen = len(backend.params)
    async with daemon.http() as http:
        response = await http.post(path, json=body)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        payload: Any = [json.loads(line[5:]) for line in response.text.splitlines()
                        if line.startswith("data: {")]
    else:
        payload = response.json()
    given = (backend.calls[-1:], backend.prompts[-1:], backend.params[seen:])
    return (response.status_code, payload, _anonymous(payload), given)


def _anonymous(payload: Any) -> Any:
    if isinstance(payload, list):
        return [_anonymous(p) for p in payload]
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k not in ("id", "created")}
    return payload


# -- the SDK's fields ---------------------------------------------------------------------------

def fields(kind: type) -> dict[str, Any]:
    """A TypedDict's fields and their types."""
    return typing.get_type_hints(kind, include_extras=True)


def message_types() -> list[type]:
    """The message TypedDicts a chat request's ``messages`` takes."""
    (union,) = typing.get_args(_bare(fields(chat_params.CompletionCreateParamsBase)["messages"]))
    return list(typing.get_args(union))


def role_of(kind: type) -> str:
    return str(typing.get_args(_bare(fields(kind)["role"]))[0])


def _bare(hint: Any) -> Any:
    """``hint`` without ``Required``, ``NotRequired``, ``Annotated`` or ``Optional``."""
    while typing.get_origin(hint) in (typing.Required, typing.NotRequired, typing.Annotated):
        hint = typing.get_args(hint)[0]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        return _bare(args[0])
    return hint


def _guess(hint: Any) -> Probe | None:
    """For a field no table names: a value its type suggests, which must be refused by name."""
    value = _example(hint)
    return None if value is None else Probe(value, "refused")


def _example(hint: Any) -> Any:
    """A value of type ``hint`` that is not empty or false, or None when there is none."""
    hint, origin = _bare(hint), typing.get_origin(_bare(hint))
    args = typing.get_args(hint)
    if hint is bool:
        return True
    if hint in (int, float, str):
        return {int: 2, float: 0.5, str: "walk"}[hint]
    if origin is Literal:
        return args[-1]
    if origin is typing.Union:
        return next((v for a in args if (v := _example(a)) is not None), None)
    if origin in (list, Iterable, Sequence):
        item = _example(args[0])
        return None if item is None else [item]
    if origin in (dict, Mapping):
        item = _example(args[1])
        return None if item is None else {"walk": item}
    if typing_extensions.is_typeddict(hint):  # the SDK's are typing_extensions' own
        hints = fields(hint)
        required = [k for k, h in hints.items() if typing.get_origin(h) is typing.Required]
        values = {k: _example(hints[k]) for k in required or list(hints)[:1]}
        return None if None in values.values() else values
    return None


# -- docs/api.md ---------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _section(route: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"- `POST {route}`")
    return text[start:text.index("\n- `", start + 1)]


@pytest.mark.parametrize(("route", "table"), [("/v1/chat/completions", CHAT),
                                              ("/v1/completions", COMPLETIONS)])
def test_docs_name_every_field_taken(route: str, table: dict[str, Probes]) -> None:
    """Every field the walk sends that is not refused is in docs/api.md's section of its route,
    and the section's ignored fields are the ones the table says are."""
    section = _section(route)
    missing = [name for name, probes in table.items()
               if any(p.expect in ("honoured", "ignored", "either") for p in _listed(probes))
               and not re.search(rf"`{name}[`.]", section)]
    assert not missing, f"docs/api.md's {route} does not mention {missing}"
    ignored = re.search(r"\*\*taken and ignored\*\* —(.*?)(?:\n  - \*\*|\Z)", section, re.S)
    assert ignored
    named = set(re.findall(r"`(\w+)`", ignored[1])) - {"name"}  # a message's name, walked there
    table_ignored = {n for n, probes in table.items()
                     if any(p.expect == "ignored" and not p.why for p in _listed(probes))}
    assert named <= table_ignored | IGNORED.keys()
    if route == "/v1/chat/completions":
        assert named == table_ignored
        assert "name" in Message.model_fields and "a message's `name`" in section


@pytest.mark.asyncio
async def test_embeddings_refuse_what_they_cannot_honour_by_name(
        fake_daemon: InProcessDaemon) -> None:
    """``/v1/embeddings`` took any field and ignored it (``extra="ignore"``): ``dimensions``
    asked for shorter vectors and got the model's own, silently. Now ``user`` is taken,
    ``dimensions`` only at the model's dimension, anything else a 400 naming it."""
    from assistant.testing import DIM, FAKE_EMBEDDING

    base = {"model": FAKE_EMBEDDING, "input": ["one", "two"]}
    async with fake_daemon.http() as http:
        for extra in ({}, {"user": "u-1"}, {"dimensions": DIM}, {"dimensions": None}):
            reply = await http.post("/v1/embeddings", json=base | extra)
            assert reply.status_code == 200, (extra, reply.text)
            assert len(reply.json()["data"][0]["embedding"]) == DIM
        for extra, param in (({"dimensions": 8}, "dimensions"),
                             ({"frobnicate": 1}, "frobnicate"),
                             ({"truncate": "END"}, "truncate")):
            reply = await http.post("/v1/embeddings", json=base | extra)
            assert reply.status_code == 400, (extra, reply.text)
            error = reply.json()["error"]
            assert error["code"] == "unsupported_parameter", error
            assert error["param"] == param and param in error["message"], error
