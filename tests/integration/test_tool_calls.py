"""Tool calls through the official openai SDK, on the real daemon and smollm2 (whose chat
template knows no tools, so the documented fallback prompt offers them): a required or named
call is shaped by a grammar, so its arguments validate; a ``tool`` message goes back into the
conversation; streamed call deltas assemble into the same calls (issue 16)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.integration.conftest import CHAT_MODEL, RunningDaemon
from tests.integration.test_daemon_api import sdk

pytestmark = pytest.mark.integration

UNITS = ["celsius", "fahrenheit"]
TOOLS: list[Any] = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The weather now in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 40}, "unit": {"enum": UNITS}},
            "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "set_timer", "description": "Start a countdown",
        "parameters": {"type": "object", "properties": {"minutes": {"type": "integer"}},
                       "required": ["minutes"]}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]


def ask(daemon: RunningDaemon, **kwargs: Any) -> Any:
    return sdk(daemon).chat.completions.create(
        model=CHAT_MODEL, messages=kwargs.pop("messages", ASK), tools=kwargs.pop("tools", TOOLS),
        max_tokens=kwargs.pop("max_tokens", 80), temperature=0, seed=1, **kwargs)


def is_weather_call(call: Any) -> bool:
    arguments = json.loads(call.function.arguments)
    return (call.type == "function" and call.function.name == "get_weather"
            and call.id.startswith("call_") and set(arguments) == {"city", "unit"}
            and isinstance(arguments["city"], str) and len(arguments["city"]) <= 40
            and arguments["unit"] in UNITS)


def test_a_named_call_validates_and_streams_as_the_sdk_assembles_it(
        daemon: RunningDaemon) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    reply = ask(daemon, tool_choice=named)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and all(is_weather_call(c) for c in choice.message.tool_calls)
    with sdk(daemon).chat.completions.stream(
            model=CHAT_MODEL, messages=ASK, tools=TOOLS, tool_choice=named, max_tokens=80,
            temperature=0, seed=1) as stream:
        events = [event.type for event in stream]
        streamed = stream.get_final_completion().choices[0]
    assert "tool_calls.function.arguments.done" in events
    assert streamed.finish_reason == "tool_calls"
    assert ([(c.function.name, c.function.arguments) for c in streamed.message.tool_calls]
            == [(c.function.name, c.function.arguments) for c in choice.message.tool_calls])
    one = ask(daemon, tool_choice="required", parallel_tool_calls=False).choices[0]
    assert one.finish_reason == "tool_calls" and len(one.message.tool_calls) == 1
    assert one.message.tool_calls[0].function.name in {"get_weather", "set_timer"}


def test_a_tool_result_goes_back_and_the_model_answers(daemon: RunningDaemon) -> None:
    first = ask(daemon, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    history = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id,
                "content": json.dumps({"temperature": 18, "sky": "clear"})}]
    answer = ask(daemon, messages=history, tool_choice="none", max_tokens=40).choices[0]
    assert answer.message.tool_calls is None
    assert answer.message.content and answer.finish_reason in {"stop", "length"}
    # With auto the model chooses: a call that names an offered function, or text.
    auto = ask(daemon, messages=history, tool_choice="auto", max_tokens=40).choices[0]
    if auto.message.tool_calls:
        assert auto.finish_reason == "tool_calls"
        assert {c.function.name for c in auto.message.tool_calls} <= {"get_weather", "set_timer"}
    else:
        assert auto.message.content


def test_a_call_the_model_begins_under_auto_is_finished_under_the_grammar(
        daemon: RunningDaemon) -> None:
    # Earlier turns show calls without a unit, so smollm2 begins one without it; the schema
    # requires a unit. Once the call has begun, the grammar of calls takes over.
    kelvin = {"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["kelvin"]}},
            "required": ["city", "unit"], "additionalProperties": False}}}
    shots: list[Any] = []
    for i, city in enumerate(["Rome", "Lima"]):
        shots += [{"role": "user", "content": f"What is the weather in {city}?"},
                  {"role": "assistant", "content": "", "tool_calls": [{
                      "id": f"c{i}", "type": "function", "function": {
                          "name": "get_weather", "arguments": json.dumps({"city": city})}}]}]
    asked = [*shots, {"role": "user", "content": "What is the weather in Paris?"}]
    shaped = ask(daemon, messages=asked, tools=[kelvin], tool_choice="auto").choices[0]
    assert shaped.finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments))
            for c in shaped.message.tool_calls] == [("get_weather",
                                                    {"city": "Paris", "unit": "kelvin"})]
    # A function whose schema no grammar can enforce (minimum) beside it: calls are read as
    # the model writes them, so this one lacks the unit.
    timer = {"type": "function", "function": {"name": "set_timer", "parameters": {
        "type": "object", "properties": {"minutes": {"type": "integer", "minimum": 1}}}}}
    loose = ask(daemon, messages=asked, tools=[kelvin, timer], tool_choice="auto").choices[0]
    assert [json.loads(c.function.arguments) for c in loose.message.tool_calls] == [
        {"city": "Paris"}]


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"tool_choice": {"type": "function", "function": {"name": "fly"}}}, "tool_choice",
     "'fly' is not one of the tools"),
    ({"tools": [{"type": "web_search"}]}, "tools", "'web_search'"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}}}],
      "tool_choice": "required"}, "tools", "tools[0].function.parameters.properties.n.minimum"),
    ({"tool_choice": "required", "stop": ["x"]}, "stop", "stop"),
    ({"tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}}}]},
     "tools", "tools[0].function.parameters.properties.n.minimum"),
    ({"response_format": {"type": "json_object"}}, "tools", "give one"),
    ({"model": "assistant"}, "tools", "routes the turn"),
    ({"messages": [*ASK, {"role": "tool", "content": "18"}]}, "messages", "tool_call_id"),
    ({"messages": [*ASK, {"role": "assistant", "tool_calls": [{"type": "function", "id": "c1",
      "function": {"name": "get_weather", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c2", "content": "18"}]}, "messages", "not 'c2'"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/x"}},
        "$defs": {"x": {"$ref": "#/$defs/x"}}}}}], "tool_choice": "required"},
     "tools", "cannot parse the grammar"),
    ({"messages": [*ASK, {"role": "assistant", "tool_calls": [{"type": "function", "id": "c",
      "function": {"name": "get_weather", "arguments": "not json"}}]}]}, "messages",
     "messages[1].tool_calls[0].function"),
]


def test_what_cannot_be_honoured_is_refused_by_name(daemon: RunningDaemon) -> None:
    for extra, param, says in REFUSED:  # one daemon for all: each case is a request
        kwargs = {"model": CHAT_MODEL, "messages": ASK, "tools": TOOLS, "max_tokens": 5, **extra}
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(daemon).chat.completions.create(**kwargs)
        error = caught.value.body
        assert isinstance(error, dict), extra
        assert error["param"] == param and says in error["message"], (extra, error)
