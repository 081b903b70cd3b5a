"""Structured output through the official openai SDK, on the real daemon and smollm2: the
reply follows the JSON schema or grammar asked for, because only tokens they allow are
sampled; what cannot be honoured is a 400 naming it (issue 16)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.integration.conftest import CHAT_MODEL, RunningDaemon
from tests.integration.test_daemon_api import sdk

pytestmark = pytest.mark.integration

ROLES = ["pilot", "cook", "doctor"]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "role": {"enum": ROLES},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Describe a ship's cook as JSON: name, age and role."}]


def ask(daemon: RunningDaemon, **kwargs: Any) -> Any:
    return sdk(daemon).chat.completions.create(
        model=kwargs.pop("model", CHAT_MODEL), messages=kwargs.pop("messages", ASK),
        max_tokens=kwargs.pop("max_tokens", 120), temperature=0, seed=1, **kwargs)


def is_person(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"name", "age", "role"}
            and isinstance(value["name"], str) and len(value["name"]) <= 40
            and isinstance(value["age"], int) and value["role"] in ROLES)


def test_a_json_schema_reply_parses_and_validates_streamed_or_not(daemon: RunningDaemon) -> None:
    schema = {"type": "json_schema",
              "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    reply = ask(daemon, response_format=schema)
    assert reply.choices[0].finish_reason == "stop"
    text = reply.choices[0].message.content
    assert is_person(json.loads(text)), text
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in ask(
        daemon, response_format=schema, stream=True) if chunk.choices)
    assert streamed == text
    plain = ask(daemon).choices[0].message.content  # the same request, unconstrained
    assert plain != text


def test_json_object_and_llama_cpp_grammar_are_enforced(daemon: RunningDaemon) -> None:
    reply = ask(daemon, response_format={"type": "json_object"},
                messages=[{"role": "user", "content": "Give a JSON object with a colour."}])
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
    yes_no = ask(daemon, extra_body={"grammar": 'root ::= "yes" | "no"'},
                 messages=[{"role": "user", "content": "Is the sea salty?"}])
    assert yes_no.choices[0].message.content in {"yes", "no"}
    assert yes_no.choices[0].finish_reason == "stop"


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}}}},
     "response_format", "'minimum' (at schema.properties.age.minimum)"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "string", "format": "email"}}}}, "response_format", "'email'"),
    ({"response_format": {"type": "yaml"}}, "response_format", "'yaml'"),
    ({"extra_body": {"grammar": "root ::= ("}}, "grammar", "cannot parse"),
    ({"extra_body": {"mirostat": 2}}, "mirostat", "mirostat: not supported"),
    ({"response_format": {"type": "json_object"}, "stop": ["}"]}, "stop", "would cut"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]},
     "messages", "content of type 'image_url'"),
]


def test_what_cannot_be_honoured_is_a_400_naming_it(daemon: RunningDaemon) -> None:
    for kwargs, param, mentions in REFUSED:  # one daemon for all: each case is a request
        with pytest.raises(openai.BadRequestError) as refused:
            ask(daemon, **kwargs)
        error = refused.value.body
        assert isinstance(error, dict) and error["param"] == param, (kwargs, error)
        assert mentions in error["message"], (kwargs, error)
    # The host is still up: a refused grammar never reaches the sampler as a null pointer.
    # Null asks for the default; other servers' fields at their neutral values are taken.
    taken = ask(daemon, max_tokens=3, user="someone", extra_body={
        "n": None, "temperature": None, "mirostat": 0, "cache_prompt": True,
        "modalities": ["text"]})
    assert taken.choices[0].message.content is not None


def test_the_routed_model_shapes_a_chat_reply_and_refuses_other_skills(
        daemon: RunningDaemon) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    to_chat = [{"role": "user", "content": f"/chat {ASK[0]['content']}"}]
    reply = ask(daemon, model="assistant", messages=to_chat, response_format=schema)
    assert is_person(json.loads(reply.choices[0].message.content))
    client = sdk(daemon).with_options(max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="assistant", response_format={"type": "json_object"},
            messages=[{"role": "user", "content": "/translate to French: good morning"}])
    error = refused.value.body
    assert isinstance(error, dict) and error["param"] == "response_format"
    assert "skill 'translate'" in error["message"], error
