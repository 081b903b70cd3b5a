"""Tool use over OpenAI's chat-completions API: does the model call the right function, with
arguments that parse, follow the function's ``parameters`` and say what the user asked?

A set is a pool of tools (OpenAI ``tools`` entries, a JSON list) and cases (JSON Lines)::

    {"id": "weather-paris", "prompt": "What's the weather like in Paris right now?",
     "tools": "all",                               # or the names offered: choosing matters
     "calls": [{"name": "get_weather", "arguments": {"city": {"contains": "Paris"}}}]}

Argument checks hold whatever the surface form (:mod:`assistant.eval.tool_checks`); arguments
not checked may be anything the schema allows. A reply is right when its calls name exactly
the functions expected (as many of each, in any order), every call's arguments parse as a JSON
object that follows its function's schema, and the calls pair with the expected ones so that
every check passes. Each case is asked in the three :data:`MODES`: ``required``
(``tool_choice`` ``"required"``: a grammar from the first token makes the model call a function
offered, with arguments that follow its schema), ``auto`` (``"auto"`` on a daemon as shipped:
the model may answer in prose, and once it begins a call the call is made again under that
grammar) and ``free`` (``"auto"`` on a daemon whose ``[models] tool_call_grammar`` is off: the
calls as the model writes them, the baseline).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError
from assistant.eval.data import EvalDataError, load_items
from assistant.eval.json_schema import known, problems
from assistant.eval.metrics import bootstrap, paired_bootstrap
from assistant.eval.tool_checks import CHECKS, describe, passes

MAX_TOKENS = 256


@dataclass(frozen=True)
class Mode:
    """How a case is asked: the request's ``tool_choice`` and the daemon's
    ``[models] tool_call_grammar``."""

    tool_choice: str
    call_grammar: bool
    label: str  # what the report calls it

    @property
    def daemon_env(self) -> dict[str, str]:
        """The daemon's setting for this mode, said even when it is the default (so that the
        caller's environment cannot change it)."""
        return {"ASSISTANT_MODELS__TOOL_CALL_GRAMMAR": str(self.call_grammar).lower()}


MODES = {
    "required": Mode("required", True, 'required: tool_choice "required", grammar from the '
                     "first token"),
    "auto": Mode("auto", True, 'auto: tool_choice "auto", grammar once a call begins '
                 "(the daemon's default)"),
    "free": Mode("auto", False, 'free: tool_choice "auto", tool_call_grammar off '
                 "(no grammar)"),
}
BASELINE = "free"  # the model unconstrained


class RequestRefused(AssistantError):
    """The API answered a request with an error status (``status``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Expected:
    name: str
    checks: Mapping[str, Mapping[str, Any]]  # argument → {check kind: expected}


@dataclass(frozen=True)
class Case:
    id: str
    prompt: str
    tools: tuple[str, ...]  # the names offered
    calls: tuple[Expected, ...]


@dataclass(frozen=True)
class ToolSet:
    tools: Mapping[str, Mapping[str, Any]]  # name → OpenAI tool entry
    cases: Sequence[Case]

    def request(self, case: Case, mode: str, model: str,
                max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
        """The chat-completions body for ``case``: greedy, its tools, ``mode``'s tool_choice."""
        return {"model": model, "messages": [{"role": "user", "content": case.prompt}],
                "tools": [self.tools[name] for name in case.tools],
                "tool_choice": MODES[mode].tool_choice, "temperature": 0, "max_tokens": max_tokens}


@dataclass(frozen=True)
class Verdict:
    case: str
    mode: str
    right_function: bool  # the functions expected, as many of each, and no other
    valid_calls: int  # calls whose arguments parse and follow their function's schema
    correct: bool  # right function, valid arguments and every check passed
    why: str = ""  # the first thing wrong
    calls: tuple[tuple[str, str], ...] = ()  # (name, arguments) as the API returned them
    content: str | None = None
    finish_reason: str | None = None
    refused: str | None = None  # the API's error, when it refused the request
    seconds: float = 0.0

    @property
    def valid(self) -> bool | None:
        """Every call's arguments follow its schema; ``None`` when no call was made."""
        return self.valid_calls == len(self.calls) if self.calls else None


def load(cases: Path, tools: Path) -> ToolSet:
    """The set in ``cases`` (JSON Lines) over the pool of ``tools`` (a JSON list)."""
    try:
        pool = {t["function"]["name"]: t for t in json.loads(tools.read_text(encoding="utf-8"))}
        for tool in pool.values():
            known(tool["function"]["parameters"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvalDataError(f"{tools}: not a JSON list of OpenAI tools whose parameters this "
                            f"check knows ({exc})") from None
    loaded = []
    for n, item in enumerate(load_items(cases), 1):
        try:
            loaded.append(_case(item, pool))
        except (KeyError, TypeError, ValueError) as exc:
            raise EvalDataError(f"{cases}, line {n}: not a tool-use case ({exc})") from None
    return ToolSet(pool, loaded)


def _case(item: Mapping[str, Any], pool: Mapping[str, Any]) -> Case:
    offered = tuple(pool) if item["tools"] == "all" else tuple(item["tools"])
    calls = tuple(Expected(c["name"], c.get("arguments", {})) for c in item["calls"])
    for name in [*offered, *(c.name for c in calls)]:
        if name not in pool or name not in offered:
            raise ValueError(f"tool {name!r} is not in the pool or not offered")
    for call in calls:
        properties = pool[call.name]["function"]["parameters"]["properties"]
        for argument, check in call.checks.items():
            if argument not in properties or len(check) != 1 or next(iter(check)) not in CHECKS:
                raise ValueError(f"{call.name}.{argument}: check {check!r}")
    return Case(str(item["id"]), str(item["prompt"]), offered, calls)


def score(case: Case, tools: Mapping[str, Mapping[str, Any]], mode: str,
          message: Mapping[str, Any], finish_reason: str | None = None) -> Verdict:
    """The verdict on one reply: ``message`` is OpenAI's ``choices[0].message``."""
    calls = tuple((str(c["function"]["name"]), str(c["function"]["arguments"]))
                  for c in message.get("tool_calls") or ())
    content = message.get("content")
    got, wanted = sorted(name for name, _ in calls), sorted(e.name for e in case.calls)
    parsed: list[tuple[str, dict[str, Any]]] = []
    broken: list[str] = []
    for name, text in calls:
        arguments, problem = _arguments(name, text, case, tools)
        parsed.append((name, arguments or {}))
        broken += [problem] if problem else []
    mismatch = _mismatch(case.calls, parsed) if got == wanted else ""
    if not calls:
        why = f"no tool call; replied {(content or '')[:80]!r}"
    elif got != wanted:
        why = f"called {got}, expected {wanted}"
    else:
        why = broken[0] if broken else mismatch
    return Verdict(case.id, mode, got == wanted, len(calls) - len(broken),
                   got == wanted and not broken and not mismatch, why, calls, content,
                   finish_reason)


def _arguments(name: str, text: str, case: Case, tools: Mapping[str, Mapping[str, Any]]
               ) -> tuple[dict[str, Any] | None, str]:
    if name not in case.tools:
        return None, f"{name} was not offered"
    try:
        arguments = json.loads(text)
    except ValueError:
        return None, f"arguments of {name} are not JSON: {text[:80]!r}"
    if not isinstance(arguments, dict):
        return None, f"arguments of {name} are not an object: {text[:80]!r}"
    found = problems(arguments, tools[name]["function"]["parameters"])
    return arguments, f"arguments of {name}: {found[0]}" if found else ""


def _mismatch(expected: Sequence[Expected], calls: Sequence[tuple[str, dict[str, Any]]]
              ) -> str:
    """Empty when the calls pair with the expected ones, name with name, so that every check
    passes; else the first check failed (of the first pairing)."""
    first = ""
    for order in itertools.permutations(calls):
        pairs = list(zip(expected, order, strict=True))
        if any(name != e.name for e, (name, _) in pairs):
            continue
        failed = [describe(e.name, argument, check, arguments.get(argument))
                  for e, (_, arguments) in pairs for argument, check in e.checks.items()
                  if not passes(arguments.get(argument), check)]
        if not failed:
            return ""
        first = first or failed[0]
    return first


Send = Callable[[dict[str, Any]], Mapping[str, Any]]


def run(send: Send, tool_set: ToolSet, model: str, mode: str, at_once: int = 1
        ) -> list[Verdict]:
    """Every case of ``tool_set`` in ``mode`` through ``send``, ``at_once`` requests in flight
    (the daemon decodes as many as its ``[models] parallel`` in one batch); the verdicts in the
    cases' order. A verdict's seconds are its own request's, others in flight beside it."""

    def one(case: Case) -> Verdict:
        started = time.perf_counter()
        try:
            reply = send(tool_set.request(case, mode, model))
        except RequestRefused as exc:
            return Verdict(case.id, mode, False, 0, False, f"refused: {exc}", refused=str(exc))
        choice = reply["choices"][0]
        verdict = score(case, tool_set.tools, mode, choice["message"], choice.get("finish_reason"))
        return replace(verdict, seconds=time.perf_counter() - started)

    with ThreadPoolExecutor(max(1, at_once), thread_name_prefix="tool-use") as pool:
        return list(pool.map(one, tool_set.cases))


def run_modes(daemon: Callable[[Mapping[str, str]], AbstractContextManager[Send]],
              tool_set: ToolSet, model: str, at_once: int = 1) -> dict[str, list[Verdict]]:
    """Every case in every mode, in :data:`MODES`' order. ``daemon(env)`` starts a daemon with
    the settings ``env`` adds and yields a :data:`Send` to it; one is started for the modes
    that share a setting of the call grammar."""
    by_daemon: dict[bool, list[str]] = {}
    for name, mode in MODES.items():
        by_daemon.setdefault(mode.call_grammar, []).append(name)
    verdicts: dict[str, list[Verdict]] = {}
    for names in by_daemon.values():
        with daemon(MODES[names[0]].daemon_env) as send:
            verdicts.update({name: run(send, tool_set, model, name, at_once)
                             for name in names})
    return {name: verdicts[name] for name in MODES}


def openai_send(client: Any) -> Send:
    """``client.chat.completions.create`` (an ``openai.OpenAI``) as a :data:`Send`: the reply
    as a dict, an error status as :class:`RequestRefused`."""
    import openai

    def send(body: dict[str, Any]) -> Mapping[str, Any]:
        try:
            reply: Mapping[str, Any] = client.chat.completions.create(**body).model_dump()
        except openai.APIStatusError as exc:
            error = exc.body.get("message") if isinstance(exc.body, dict) else None
            raise RequestRefused(exc.status_code, str(error or exc.message)) from None
        return reply

    return send


@dataclass(frozen=True)
class Summary:
    """One mode's figures; a share is (mean, low, high), with its 95 % bootstrap interval."""

    mode: str
    n: int
    right_function: tuple[float, float, float]
    correct: tuple[float, float, float]  # right function, valid arguments, checks passed
    calls: int  # calls made, over every case
    valid_calls: int  # of which the arguments parse and follow the schema
    no_call: int  # cases answered without a call (prose, or a call the API did not parse)
    refused: int  # requests the API answered with an error
    # The requests' own times, summed: more than the wall time when several were in flight at
    # once (each then also waits for the others, and the first ones for the model's load).
    seconds: float


def summarize(verdicts: Sequence[Verdict]) -> Summary:
    return Summary(
        verdicts[0].mode, len(verdicts),
        bootstrap([float(v.right_function) for v in verdicts]),
        bootstrap([float(v.correct) for v in verdicts]),
        sum(len(v.calls) for v in verdicts), sum(v.valid_calls for v in verdicts),
        sum(not v.calls and v.refused is None for v in verdicts),
        sum(v.refused is not None for v in verdicts), sum(v.seconds for v in verdicts))


def table(verdicts: Mapping[str, Sequence[Verdict]], baseline: str = BASELINE) -> str:
    """The report, in Markdown: each mode's shares (``verdicts`` maps a mode of :data:`MODES`
    to its verdicts), then each other mode − ``baseline`` over the same cases, with its paired
    bootstrap interval."""
    base = verdicts[baseline]
    if any([v.case for v in vs] != [v.case for v in base] for vs in verdicts.values()):
        raise ValueError("every mode must score the same cases in the same order")
    lines = ["| mode | n | right function | right function, valid arguments, checks passed "
             "| calls with valid arguments | no call | refused | request seconds, summed |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, vs in verdicts.items():
        s = summarize(vs)
        lines.append(f"| {MODES[mode].label} | {s.n} | {_share(s.right_function)} | "
                     f"{_share(s.correct)} | {s.valid_calls} of {s.calls} | {s.no_call} | "
                     f"{s.refused} | {s.seconds:.0f} |")
    for mode, vs in verdicts.items():
        if mode == baseline:
            continue
        differences = [_share(paired_bootstrap([float(getattr(v, key)) for v in vs],
                                               [float(getattr(v, key)) for v in base]), "+")
                       for key in ("right_function", "correct")]
        lines.append(f"| {mode} − {baseline}, paired | {len(vs)} | {differences[0]} | "
                     f"{differences[1]} | | | | |")
    return "\n".join(lines) + "\n"


def _share(figures: tuple[float, float, float], sign: str = "") -> str:
    mean, low, high = figures
    return f"{mean:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def failures(verdicts: Sequence[Verdict]) -> list[str]:
    """One line per case scored wrong: its id, mode and the first thing wrong."""
    return [f"{v.mode:<8} {v.case:<22} {v.why}" for v in verdicts if not v.correct]
