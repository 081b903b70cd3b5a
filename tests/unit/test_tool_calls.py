"""Tool calls: finding calls in a streamed reply, the fallback prompt for templates that know
no tools, the grammar that shapes a required call, and the request's tools checked."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from assistant.daemon import openai_tools
from assistant.errors import RequestError
from assistant.models.template import ChatTemplate
from assistant.models.tool_calls import CallReader, call_grammar, fallback_messages

WEATHER = {"name": "get_weather", "description": "Weather now", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def read(pieces: list[str], names: frozenset[str] = frozenset({"get_weather"})) -> list[Any]:
    reader = CallReader(set(names))
    out: list[Any] = []
    for piece in pieces:
        out += reader.feed(piece)
    out += reader.end()
    return [item if isinstance(item, str) else (item["name"], json.loads(item["arguments"]))
            for item in out]


@pytest.mark.parametrize(("pieces", "expected"), [
    # Tagged calls split anywhere, text before them kept, whitespace between them dropped.
    (["Let me look.\n<tool", "_call>\n{\"name\": \"get_weather\", \"argu",
      "ments\": {\"city\": \"Pa}ris\"}}\n</tool_call>\n<tool_call>{\"name\": \"get_weather\", "
      "\"arguments\": {\"city\": \"Rome\"}}</tool_call>\n"],
     ["Let me look.", ("get_weather", {"city": "Pa}ris"}), ("get_weather", {"city": "Rome"})]),
    # Untagged objects at the start of the reply, as qwen2.5-coder-0.5b writes them.
    (["{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n",
      "{\"name\": \"get_weather\", \"parameters\": \"{\\\"city\\\": \\\"Bonn\\\"}\"}"],
     [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Bonn"})]),
    # A call the model did not close is a call if its JSON is whole.
    (["<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}"], [("get_weather", {})]),
    # Not calls: the text as written, whitespace and all.
    (["  Hello  ", " world\n"], ["  Hello", "   world", "\n"]),
    (["{\"a\": 1} is JSON"], ["{\"a\": 1} is JSON"]),
    (["Say {\"name\": \"get_weather\", \"arguments\": {}}"],
     ["Say {\"name\": \"get_weather\", \"arguments\": {}}"]),
    (["<tool_call>{\"name\": \"launch\", \"arguments\": {}}</tool_call>"],
     ["<tool_call>{\"name\": \"launch\", \"arguments\": {}}</tool_call>"]),
    (["<to", "ol is a word"], ["<tool is a word"]),
    (["<tool_call>{\"name\": [\"get_weather\"], \"arguments\": {}}</tool_call>"],
     ["<tool_call>{\"name\": [\"get_weather\"], \"arguments\": {}}</tool_call>"]),
    (["{\"name\": {}, \"arguments\": {}}"], ["{\"name\": {}, \"arguments\": {}}"]),
    (["{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Ro"],
     ["{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Ro"]),
    # In a Markdown code block, as qwen2.5-coder writes it; another code block is text.
    (["``", "`json\n", "{\n  \"name\": \"get_weather\",\n  \"arguments\": {}\n}\n`", "``\n"],
     [("get_weather", {})]),
    (["```python\nprint(1)\n```"], ["```python\nprint(1)\n```"]),
])
def test_calls_are_found_as_the_reply_streams(pieces: list[str], expected: list[Any]) -> None:
    assert read(pieces) == expected


def test_a_template_without_tools_gets_them_in_the_fallback_form() -> None:
    chatml = ChatTemplate(
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}",
        bos_token="", eos_token="", source_name="test")
    assert not chatml.knows_tools
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "b", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "a", "content": "18 C"},
        {"role": "tool", "tool_call_id": "b", "content": "21 C"},
    ]
    text = chatml.render(history, tools=[WEATHER])
    assert text.startswith("<|system|>Be brief.\n\n# Tools")
    assert json.dumps({"type": "function", "function": WEATHER}) in text
    assert ('<|assistant|><tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}'
            "\n</tool_call>\n<tool_call>") in text
    assert ("<|user|><tool_response>\n18 C\n</tool_response>\n<tool_response>\n21 C\n"
            "</tool_response>\n") in text
    assert fallback_messages([{"role": "user", "content": "hi"}], None) == [
        {"role": "user", "content": "hi"}]


def test_a_template_that_knows_tools_renders_them_itself() -> None:
    source = ("{% if tools %}{% for t in tools %}{{ t | tojson }}\n{% endfor %}{% endif %}"
              "{% for m in messages %}{{ m.role }}:{{ m.content }}"
              "{% for c in m.tool_calls or [] %}{{ c.function.arguments | tojson }}{% endfor %}"
              "\n{% endfor %}")
    template = ChatTemplate(source, bos_token="", eos_token="", source_name="test")
    assert template.knows_tools
    text = template.render([{"role": "assistant", "content": "", "tool_calls": [
        {"id": "a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "<Köln>"}'}}]}],
        tools=[WEATHER])
    # Hugging Face's tojson: no HTML escapes, not ASCII-only; arguments as an object.
    assert '"description": "Weather now"' in text
    assert 'assistant:{"city": "<Köln>"}' in text


def test_the_call_grammar_parses_in_llama_cpp_and_keeps_definitions_apart() -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    point = {"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}},
             "$defs": {"P": {"type": "object", "properties": {"x": {"type": "integer"}}}}}
    other = {"type": "object", "properties": {"p": {"$ref": "#/definitions/P"}},
             "definitions": {"P": {"type": "string"}}}
    tools = [WEATHER, {"name": "a", "parameters": point}, {"name": "b", "parameters": other}]
    grammar = call_grammar(tools, None, parallel=True)
    # Each function's P is its own: an object for a, a string for b.
    assert 'f1-P ::= "{"' in grammar and "call-2-arguments-p ::= string" in grammar
    assert grammar.rstrip().endswith('("\\n" "<tool_call>\\n" call "\\n</tool_call>")*')
    LlamaGrammar.from_string(grammar, verbose=False)
    one = call_grammar(tools, "get_weather", parallel=False)
    assert '"\\"a\\""' not in one and one.rstrip().endswith('"\\n</tool_call>"')
    LlamaGrammar.from_string(one, verbose=False)


@pytest.mark.parametrize(("tools", "choice", "says"), [
    ([{"type": "function", "function": {"name": "bad name"}}], None, "1 to 64 letters"),
    ([{"type": "function", "function": {"name": "f"}}] * 2, None, "offered twice"),
    ([{"type": "function", "function": {"name": "f", "parameters": {
        "$ref": "https://example.com/s.json"}}}], None, "only \"#/$defs/"),
    ([], "required", "needs tools"),
    ([{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"p": {"$ref": "#/$defs/Missing"}}}}}], None,
     "refers to no definition"),
    ([{"type": "function", "function": {"name": "f"}}], {"type": "allowed_tools"},
     "give 'auto'"),
])
def test_tools_that_cannot_be_honoured_are_refused(
        tools: list[Any], choice: Any, says: str) -> None:
    with pytest.raises(RequestError, match=re.escape(says)):
        parsed = openai_tools.parse_tools(tools)
        openai_tools.parse_choice(choice, parsed)


def test_tool_choice_defaults_as_openai_does() -> None:
    tools = openai_tools.parse_tools([{"type": "function", "function": {"name": "f"}}])
    assert openai_tools.parse_choice(None, tools) == ("auto", None)
    assert openai_tools.parse_choice(None, ()) == ("none", None)
    named = {"type": "function", "function": {"name": "f"}}
    assert openai_tools.parse_choice(named, tools) == ("required", "f")
    assert tools[0].parameters == {"type": "object", "properties": {}}


def test_a_call_begun_is_told_and_made_again_from_where_it_began() -> None:
    reader = CallReader({"get_weather"})
    assert list(reader.feed("Let me see. <tool_")) == ["Let me see."]
    assert reader.starting() is None  # not yet a call
    assert list(reader.feed("call>\n{\"name\": \"get_wea")) == []
    assert reader.starting() == "Let me see. "
    reader.restart()  # the grammar makes the call again, from its tag
    assert [c if isinstance(c, str) else c["name"] for c in reader.feed(
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>")] == [
        "get_weather"]
    bare = CallReader({"get_weather"})
    assert list(bare.feed("  {\"na")) == [] and bare.starting() is None
    assert list(bare.feed("me\": \"x")) == [] and bare.starting() == ""
    fenced = CallReader({"get_weather"})
    assert list(fenced.feed("```json\n{ \"name\":")) == [] and fenced.starting() == ""
    prose = CallReader({"get_weather"})
    assert list(prose.feed("The {\"name\": x}")) == ["The {\"name\": x}"]
    assert prose.starting() is None


def test_strict_asks_for_a_schema_a_grammar_can_enforce() -> None:
    tools = openai_tools.parse_tools([{"type": "function", "function": {
        "name": "f", "strict": True,
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}}])
    assert tools[0].strict
    openai_tools.check_enforceable(tools, None)
    loose = openai_tools.parse_tools([{"type": "function", "function": {
        "name": "f", "strict": True, "parameters": {"type": "integer", "minimum": 0}}}])
    with pytest.raises(RequestError, match="minimum"):
        openai_tools.check_enforceable(loose, None)


@pytest.mark.timeout(30)
def test_a_long_reply_is_read_once_not_again_at_each_piece() -> None:
    # An open object of 200,000 characters, fed as a model streams it: a reader that scanned
    # the whole object at each piece would take minutes.
    reader = CallReader({"get_weather"})
    assert list(reader.feed('{"name": "get_weather", "arguments": {"text": "')) == []
    for _ in range(20_000):
        assert list(reader.feed("abcdefghi ")) == []
    calls = list(reader.feed('"}}'))
    assert [c["name"] for c in calls if isinstance(c, dict)] == ["get_weather"]


def test_a_template_cannot_make_tojson_build_huge_strings() -> None:
    from assistant.models.template import TemplateError

    for source in ("{{ messages | tojson(indent=2000000000) }}",
                   "{{ messages | tojson(separators=[',' * 100000, ':']) }}",
                   "{{ {1: 2, 'a': 3} | tojson(sort_keys=true) }}"):
        template = ChatTemplate(source, bos_token="", eos_token="", source_name="test")
        with pytest.raises(TemplateError, match="tojson"):
            template.render([{"role": "user", "content": "hi"}])
