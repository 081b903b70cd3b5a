"""assistant.eval.tool_use and its parts, on hand-made OpenAI replies: the set loads, the
schema check and the argument checks, the verdicts, the runners and the report."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from assistant.eval import metrics, tool_use
from assistant.eval.data import EvalDataError
from assistant.eval.json_schema import known, problems
from assistant.eval.tool_checks import arithmetic, describe, passes
from assistant.models.structured import check as grammar_takes

DATA = Path(__file__).resolve().parents[1] / "data" / "eval"
SET = tool_use.load(DATA / "tool-use.jsonl", DATA / "tool-use-tools.json")
WEATHER = SET.tools["get_weather"]["function"]["parameters"]


def case(case_id: str) -> tool_use.Case:
    return next(c for c in SET.cases if c.id == case_id)


def message(*calls: tuple[str, Any], content: str | None = None) -> dict[str, Any]:
    """``choices[0].message`` as the API returns it: arguments given as a dict are encoded."""
    return {"role": "assistant", "content": content, "tool_calls": [
        {"id": f"call_{i}", "type": "function", "function": {
            "name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
        for i, (name, args) in enumerate(calls)] or None}


def verdict(case_id: str, *calls: tuple[str, Any], content: str | None = None,
            mode: str = "auto") -> tool_use.Verdict:
    return tool_use.score(case(case_id), SET.tools, mode, message(*calls, content=content))


def test_the_project_set_has_thirty_cases_over_tools_the_grammar_takes() -> None:
    assert len(SET.cases) == 30 and len({c.id for c in SET.cases}) == 30
    assert sum(len(c.calls) == 1 for c in SET.cases) >= 25
    assert any(len(c.tools) < len(SET.tools) for c in SET.cases)  # choosing matters
    assert {e.name for c in SET.cases for e in c.calls} == set(SET.tools)
    for tool in SET.tools.values():
        grammar_takes(tool["function"]["parameters"])  # "required" can be enforced
        known(tool["function"]["parameters"])


def test_a_case_naming_a_tool_not_offered_or_an_unknown_check_is_refused(
        tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    for bad in ({"id": "x", "prompt": "p", "tools": ["set_timer"],
                 "calls": [{"name": "get_weather", "arguments": {}}]},
                {"id": "x", "prompt": "p", "tools": "all",
                 "calls": [{"name": "set_timer", "arguments": {"minutes": {"near": 3}}}]},
                {"id": "x", "prompt": "p", "tools": "all",
                 "calls": [{"name": "set_timer", "arguments": {"hours": {"equals": 3}}}]}):
        cases.write_text(json.dumps(bad) + "\n")
        with pytest.raises(EvalDataError, match="line 1"):
            tool_use.load(cases, DATA / "tool-use-tools.json")
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}}}]))
    with pytest.raises(EvalDataError, match=r"\$\.n"):
        tool_use.load(cases, tools)


def test_the_schema_check() -> None:
    assert problems({"city": "Paris", "unit": "celsius"}, WEATHER) == []
    assert problems({"unit": "kelvin", "country": "FR"}, WEATHER) == [
        "$: 'city' is required", "$.unit: 'kelvin' is not one of ['celsius', 'fahrenheit']",
        "$: 'country' is not a property it allows"]
    assert problems({"city": 3}, WEATHER) == ["$.city: 3 is not of type string"]
    timer = SET.tools["set_timer"]["function"]["parameters"]
    assert problems({"minutes": 3.0}, timer) == []  # JSON has one number type
    assert problems({"minutes": 3.5}, timer) and problems({"minutes": True}, timer)
    event = SET.tools["create_calendar_event"]["function"]["parameters"]
    assert problems({"title": "x", "date": "2026-02-30"}, event) == [
        "$.date: '2026-02-30' is not a date (YYYY-MM-DD)"]
    shopping = SET.tools["add_to_shopping_list"]["function"]["parameters"]
    assert problems({"items": ["milk", 2]}, shopping) == ["$.items[1]: 2 is not of type string"]
    with pytest.raises(ValueError, match="pattern"):
        known({"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}})


@pytest.mark.parametrize(("value", "check", "ok"), [
    (" paris ", {"equals": "Paris"}, True),
    ("Paris, France", {"equals": "Paris"}, False),
    ("Paris, France", {"contains": "paris"}, True),
    (120.0, {"equals": 120}, True),
    ("120", {"equals": 120}, False),
    (True, {"equals": 1}, False),
    (49.99, {"equals": 49.99}, True),
    ("fr", {"one_of": ["French", "FR"]}, True),
    ("9:30", {"matches": "0?9:30(:00)?"}, True),
    ("19:30", {"matches": "0?9:30(:00)?"}, False),
    (["Milk", "a dozen eggs", "fresh spinach"], {"includes": ["milk", "egg", "spinach"]}, True),
    (["milk", "eggs"], {"includes": ["milk", "egg", "spinach"]}, False),
    ("37 * 43", {"evaluates_to": 1591}, True),
    ("43×37", {"evaluates_to": 1591}, True),
    ("(125 + 375) / 4", {"evaluates_to": 125}, True),
    ("7 * 3.25", {"evaluates_to": 22.75}, True),
    ("37 times 43", {"evaluates_to": 1591}, False),
    (None, {"contains": "x"}, False),
])
def test_argument_checks_hold_whatever_the_surface_form(value: Any, check: dict[str, Any],
                                                         ok: bool) -> None:
    assert passes(value, check) is ok


def test_arithmetic_evaluates_numbers_only() -> None:
    assert arithmetic("-(2 + 3) ** 2 % 7 + 10 // 4") == -(2 + 3) ** 2 % 7 + 10 // 4 == 5
    assert arithmetic("__import__('os').getcwd()") is None
    assert arithmetic("9 ** 9 ** 9") is None
    assert arithmetic("1 / 0") is None
    assert arithmetic("x + 1") is None
    assert describe("get_weather", "city", {"contains": "Paris"}, None) == (
        "get_weather.city: missing fails contains 'Paris'")


def test_a_right_call_with_valid_arguments_is_correct() -> None:
    v = verdict("weather-fahrenheit",
                ("get_weather", {"city": "Phoenix, AZ", "unit": "fahrenheit"}))
    assert v.right_function and v.valid and v.correct and v.why == ""


def test_prose_a_wrong_function_and_an_extra_call_are_the_wrong_function() -> None:
    prose = verdict("weather-paris", content="It is sunny in Paris today!")
    assert not prose.right_function and prose.valid is None and not prose.correct
    assert prose.why.startswith("no tool call; replied 'It is sunny")
    wrong = verdict("weather-paris", ("search_documents", {"query": "Paris weather"}))
    assert not wrong.right_function and wrong.valid and not wrong.correct
    assert wrong.why == "called ['search_documents'], expected ['get_weather']"
    twice = verdict("weather-paris", ("get_weather", {"city": "Paris"}),
                    ("get_weather", {"city": "Paris"}))
    assert not twice.right_function


def test_broken_or_schema_breaking_arguments_are_not_valid() -> None:
    not_json = verdict("timer-ten", ("set_timer", '{"minutes": 10'))
    assert not_json.right_function and not_json.valid is False and not not_json.correct
    assert not_json.why.startswith("arguments of set_timer are not JSON")
    as_text = verdict("timer-ten", ("set_timer", {"minutes": "10"}))
    assert as_text.valid is False and as_text.why == (
        "arguments of set_timer: $.minutes: '10' is not of type integer")
    kelvin = verdict("weather-paris", ("get_weather", {"city": "Paris", "unit": "kelvin"}))
    assert kelvin.right_function and not kelvin.valid and not kelvin.correct
    not_offered = verdict("timer-nap", ("set_timer", {"minutes": 20}),
                          ("get_weather", {"city": "x"}))
    assert not_offered.valid_calls == 1 and not not_offered.correct


def test_valid_arguments_that_fail_a_check_are_not_correct() -> None:
    v = verdict("currency-usd-eur", ("convert_currency", {
        "amount": 120, "from_currency": "EUR", "to_currency": "USD"}))
    assert v.right_function and v.valid and not v.correct
    assert v.why == "convert_currency.from_currency: 'EUR' fails equals 'USD'"
    missing = verdict("calendar-dentist", ("create_calendar_event", {
        "title": "Dentist", "date": "2026-03-14"}))
    assert missing.valid and not missing.correct and "time: missing" in missing.why


def test_two_calls_pair_in_either_order() -> None:
    berlin, madrid = ("get_weather", {"city": "Berlin"}), ("get_weather", {"city": "Madrid"})
    assert verdict("two-weather", madrid, berlin).correct
    assert not verdict("two-weather", berlin, berlin).correct
    assert not verdict("two-weather", berlin).right_function
    mixed = verdict("two-timer-currency", ("convert_currency", {
        "amount": 60, "from_currency": "eur", "to_currency": "usd"}),
        ("set_timer", {"minutes": 25, "label": "timer"}))
    assert mixed.correct


def _reply(*calls: tuple[str, Any], content: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": message(*calls, content=content),
                         "finish_reason": "tool_calls" if calls else "stop"}]}


def test_run_asks_each_case_with_the_mode_s_tool_choice_and_records_refusals() -> None:
    sent: list[dict[str, Any]] = []

    def send(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        if "Paris" in body["messages"][0]["content"]:
            raise tool_use.RequestRefused(400, "tools: tool calls are not supported yet")
        return _reply(("set_timer", {"minutes": 10}))

    verdicts = tool_use.run(send, SET, "qwen2.5-coder-0.5b", "required")
    assert len(sent) == 30 and {b["tool_choice"] for b in sent} == {"required"}
    assert sent[0]["temperature"] == 0 and sent[0]["model"] == "qwen2.5-coder-0.5b"
    assert [t["function"]["name"] for t in sent[2]["tools"]] == [
        "search_documents", "get_weather", "create_calendar_event"]
    refused = [v for v in verdicts if v.refused]
    assert [v.case for v in refused] == ["weather-paris"] and not refused[0].correct
    assert refused[0].why == "refused: 400: tools: tool calls are not supported yet"
    assert [v.case for v in verdicts if v.correct] == ["timer-ten"]
    assert verdicts[1].finish_reason == "tool_calls"


def test_run_keeps_at_once_requests_in_flight_and_the_verdicts_in_the_cases_order() -> None:
    lock = threading.Lock()
    in_flight, most = 0, 0
    order = {c.id: n for n, c in enumerate(SET.cases)}

    def send(body: dict[str, Any]) -> dict[str, Any]:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        case = next(c for c in SET.cases if c.prompt == body["messages"][0]["content"])
        time.sleep(0.002 * (len(SET.cases) - order[case.id]))  # later cases end first
        with lock:
            in_flight -= 1
        return _reply(("set_timer", {"minutes": 10}))

    verdicts = tool_use.run(send, SET, "m", "required", at_once=4)
    assert most == 4
    assert [v.case for v in verdicts] == [c.id for c in SET.cases]
    assert [v.case for v in verdicts if v.correct] == ["timer-ten"]
    most = 0
    tool_use.run(send, SET, "m", "required")  # by default one at a time, as the benchmark asks
    assert most == 1


def test_run_modes_asks_required_and_auto_of_one_daemon_and_free_of_another() -> None:
    daemons: list[tuple[dict[str, str], list[str]]] = []

    @contextmanager
    def daemon(settings: Mapping[str, str]) -> Iterator[tool_use.Send]:
        asked: list[str] = []
        daemons.append((dict(settings), asked))

        def send(body: dict[str, Any]) -> dict[str, Any]:
            asked.append(body["tool_choice"])
            return _reply(("set_timer", {"minutes": 10}))

        yield send

    verdicts = tool_use.run_modes(daemon, SET, "m")
    assert list(verdicts) == ["required", "auto", "free"]
    assert [v.mode for v in verdicts["free"]] == ["free"] * 30
    assert daemons == [({"ASSISTANT_MODELS__TOOL_CALL_GRAMMAR": "true"},
                        ["required"] * 30 + ["auto"] * 30),
                       ({"ASSISTANT_MODELS__TOOL_CALL_GRAMMAR": "false"}, ["auto"] * 30)]


def test_the_report_has_a_row_per_mode_and_each_mode_against_the_baseline_paired() -> None:
    ids = [c.id for c in SET.cases]

    def verdicts(mode: str, right: int, correct: int) -> list[tool_use.Verdict]:
        return [tool_use.Verdict(i, mode, n < right, int(n < right), n < correct,
                                 calls=(("f", "{}"),) if n < right else ())
                for n, i in enumerate(ids)]

    modes = {"required": verdicts("required", 30, 24), "auto": verdicts("auto", 25, 20),
             "free": verdicts("free", 21, 15)}
    summary = tool_use.summarize(modes["required"])
    assert summary.right_function[0] == 1.0 and summary.correct[0] == pytest.approx(0.8)
    low, high = summary.correct[1:]
    assert low < 0.8 < high
    text = tool_use.table(modes)
    rows = [line for line in text.splitlines() if not line.startswith(("| mode ", "|---"))]
    assert rows[0].startswith(
        '| required: tool_choice "required", grammar from the first token | 30 | '
        "1.000 [1.000, 1.000] | 0.800 [")
    assert rows[1].startswith('| auto: tool_choice "auto", grammar once a call begins '
                              "(the daemon's default) | 30 | 0.833 [")
    assert rows[2].startswith('| free: tool_choice "auto", tool_call_grammar off (no grammar) '
                              "| 30 | 0.700 [") and "| 21 of 21 | 9 | 0 |" in rows[2]
    assert rows[3].startswith("| required − free, paired | 30 | +0.300 [+")
    assert rows[4].startswith("| auto − free, paired | 30 | +0.133 [")
    assert len(rows) == 5
    assert tool_use.table(modes, baseline="auto").splitlines()[-1].startswith(
        "| free − auto, paired | 30 | -0.133 [")
    assert len(tool_use.failures(modes["free"])) == 15
    with pytest.raises(ValueError, match="same cases"):
        tool_use.table({**modes, "auto": modes["auto"][::-1]})


def test_bootstrap_of_one_list() -> None:
    mean, low, high = metrics.bootstrap([1.0] * 20 + [0.0] * 10)
    assert mean == pytest.approx(2 / 3) and low < mean < high
    assert metrics.bootstrap([1.0] * 5) == (1.0, 1.0, 1.0)


def _sdk(handler: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://assistant/v1", api_key="unused", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_openai_send_returns_the_reply_as_a_dict_and_a_400_as_refused() -> None:
    def ok(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["tool_choice"] == "auto" and body["tools"]
        return httpx.Response(200, json={
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            **_reply(("set_timer", {"minutes": 10}))})

    send = tool_use.openai_send(_sdk(ok))
    reply = send(SET.request(case("timer-ten"), "auto", "m"))
    assert tool_use.score(case("timer-ten"), SET.tools, "auto", reply["choices"][0][
        "message"]).correct

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {
            "message": "tools: tool calls are not supported yet", "type": "invalid_request_error",
            "param": "tools", "code": "unsupported_parameter"}})

    with pytest.raises(tool_use.RequestRefused, match="400: tools: tool calls") as refused:
        tool_use.openai_send(_sdk(refuse))(SET.request(case("timer-ten"), "auto", "m"))
    assert refused.value.status == 400
