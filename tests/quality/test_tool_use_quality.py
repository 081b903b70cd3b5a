"""Quality (`make quality`): tool use on qwen2.5-coder-0.5b (issue 16). The project's 30
cases (tests/data/eval/tool-use.jsonl) go to the real daemon's /v1/chat/completions through
the openai SDK, greedy, each twice: constrained (``tool_choice="required"``) and not
(``"auto"``). Scoring is :mod:`assistant.eval.tool_use`'s.

The shares are printed (the table docs/quality.md takes; run with ``-s`` to see it, or
``python -m benchmarks tool_use``), not held to a bar. What is asserted is what the grammar
guarantees: under ``"required"`` every reply calls a function offered, with arguments that
parse and follow its schema.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from assistant.eval import tool_use
from assistant.testing import daemon_environment, start_daemon
from tests.conftest import TEST_MODELS_DIR
from tests.integration.test_daemon_api import sdk

pytestmark = [pytest.mark.quality, pytest.mark.timeout(3600)]
MODEL, FILE = "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DATA = Path(__file__).resolve().parents[1] / "data" / "eval"
Verdicts = dict[str, list[tool_use.Verdict]]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Verdicts:
    """Both modes' verdicts, from one daemon on the shipped default model."""
    if not (TEST_MODELS_DIR / FILE).exists():
        pytest.fail(f"{FILE} missing in {TEST_MODELS_DIR}: run `make quality`, which pulls it")
    tool_set = tool_use.load(DATA / "tool-use.jsonl", DATA / "tool-use-tools.json")
    tmp = tmp_path_factory.mktemp("tool-use")
    runtime = Path(tempfile.mkdtemp(prefix="as-", dir="/tmp"))  # a socket path stays short
    env = daemon_environment(tmp / "data", runtime / "run", model=MODEL,
                             models_dir=TEST_MODELS_DIR,
                             extra_env={"ASSISTANT_MODELS__CONTEXT_LENGTH": "4096"})
    daemon = start_daemon(env, tmp / "daemon.log")
    try:
        send = tool_use.openai_send(sdk(daemon))
        return {mode: tool_use.run(send, tool_set, MODEL, mode) for mode in tool_use.MODES}
    finally:
        daemon.stop()
        shutil.rmtree(runtime, ignore_errors=True)


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
    constrained, auto = answered(verdicts)["constrained"], verdicts["auto"]
    report = tool_use.table(constrained, auto)
    print(f"\n{MODEL}, {len(auto)} tool-use cases, greedy\n\n{report}")
    print("\n".join(tool_use.failures(constrained + auto)))
    assert len(constrained) == len(auto) == 30


def test_required_always_calls_an_offered_function_with_valid_arguments(
        verdicts: Verdicts) -> None:
    constrained = answered(verdicts)["constrained"]
    uncalled = [(v.case, v.content) for v in constrained if not v.calls]
    assert not uncalled, uncalled
    invalid = [(v.case, v.why, v.calls) for v in constrained if not v.valid]
    assert not invalid, invalid
    assert {v.finish_reason for v in constrained} == {"tool_calls"}
