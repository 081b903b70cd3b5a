"""Quality (`make quality`): tool use on qwen2.5-coder-0.5b (issue 16). The project's 30
cases (tests/data/eval/tool-use.jsonl) go to the real daemon's /v1/chat/completions through
the openai SDK, greedy, in three modes (:data:`assistant.eval.tool_use.MODES`): ``required``
(``tool_choice="required"``, a grammar from the first token), ``auto`` (``"auto"``, a call the
model begins made again under the grammar, as shipped) and ``free`` (``"auto"`` on a second
daemon with ``[models] tool_call_grammar`` off: the model unconstrained). Scoring is
:mod:`assistant.eval.tool_use`'s.

The shares are printed as a table (run with ``-s`` to see it), not held to a bar. What is
asserted is what the grammar guarantees: under ``required`` every reply calls a function
offered, with arguments that parse and follow its schema; under ``auto`` every call made does.
``free`` is only reported. Four cases are in flight at once, so the table's request seconds
(summed) are more than the run's wall time; docs/quality.md's table is the benchmark's
(``python -m benchmarks tool_use``), one request at a time.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from assistant.eval import tool_use
from assistant.testing import daemon_environment, start_daemon
from tests.conftest import TEST_MODELS_DIR
from tests.integration.test_daemon_api import sdk

pytestmark = [pytest.mark.quality, pytest.mark.timeout(3600)]
MODEL, FILE = "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DATA = Path(__file__).resolve().parents[1] / "data" / "eval"
# Cases in flight at once, as many as the daemon decodes in one batch (``[models] parallel``,
# 4 by default). The 90 requests took 190 s, against 235 s one at a time (2026-12-06, 2-core
# Intel). Greedy replies in a shared batch may part at a near tie from those asked alone
# (``LlamaModel._widen``): that run's free mode made one call more, every share the same.
AT_ONCE = 4
Verdicts = dict[str, list[tool_use.Verdict]]


@contextmanager
def daemon(tmp: Path, settings: Mapping[str, str]) -> Iterator[tool_use.Send]:
    """A daemon on the shipped default model with ``settings`` added, as a :data:`Send`."""
    runtime = Path(tempfile.mkdtemp(prefix="as-", dir="/tmp"))  # a socket path stays short
    env = daemon_environment(tmp / "data", runtime / "run", model=MODEL,
                             models_dir=TEST_MODELS_DIR,
                             extra_env={"ASSISTANT_MODELS__CONTEXT_LENGTH": "4096", **settings})
    running = start_daemon(env, tmp / "daemon.log")
    try:
        yield tool_use.openai_send(sdk(running))
    finally:
        running.stop()
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Verdicts:
    """Every mode's verdicts: one daemon as shipped, one with the call grammar off."""
    if not (TEST_MODELS_DIR / FILE).exists():
        pytest.fail(f"{FILE} missing in {TEST_MODELS_DIR}: run `make quality`, which pulls it")
    tool_set = tool_use.load(DATA / "tool-use.jsonl", DATA / "tool-use-tools.json")
    return tool_use.run_modes(
        lambda settings: daemon(tmp_path_factory.mktemp("tool-use"), settings), tool_set, MODEL,
        AT_ONCE)


def answered(verdicts: Verdicts) -> Verdicts:
    """The verdicts, once no request was refused; else a failure saying what the API said."""
    refused = [v for vs in verdicts.values() for v in vs if v.refused]
    if refused:
        total = sum(len(vs) for vs in verdicts.values())
        pytest.fail(f"the daemon refused {len(refused)} of {total} requests; the first "
                    f"({refused[0].mode}, {refused[0].case}): {refused[0].refused}",
                    pytrace=False)
    return verdicts


def test_tool_use_shares_are_reported(verdicts: Verdicts) -> None:
    report = tool_use.table(answered(verdicts))
    print(f"\n{MODEL}, {len(verdicts['free'])} tool-use cases, greedy\n\n{report}")
    print("\n".join(tool_use.failures([v for vs in verdicts.values() for v in vs])))
    assert [len(vs) for vs in verdicts.values()] == [30] * len(tool_use.MODES)


def test_required_always_calls_an_offered_function_with_valid_arguments(
        verdicts: Verdicts) -> None:
    required = answered(verdicts)["required"]
    uncalled = [(v.case, v.content) for v in required if not v.calls]
    assert not uncalled, uncalled
    invalid = [(v.case, v.why, v.calls) for v in required if not v.valid]
    assert not invalid, invalid
    assert {v.finish_reason for v in required} == {"tool_calls"}


def test_auto_calls_an_offered_function_with_valid_arguments_whenever_it_calls(
        verdicts: Verdicts) -> None:
    called = [v for v in answered(verdicts)["auto"] if v.calls]
    invalid = [(v.case, v.why, v.calls) for v in called if not v.valid]
    assert not invalid, invalid
