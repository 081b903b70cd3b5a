"""Tool use on qwen2.5-coder-0.5b in three modes: the report of
tests/quality/test_tool_use_quality.py, for docs/quality.md.

    python -m benchmarks tool_use     # the Markdown table, the cases scored wrong, two rows

The project's 30 cases (tests/data/eval/tool-use.jsonl) through the openai SDK, greedy, in
:data:`assistant.eval.tool_use.MODES`: ``required`` and ``auto`` on a daemon as shipped,
``free`` (``"auto"``, the model unconstrained: the baseline) on a second daemon with
``[models] tool_call_grammar`` off. Each row's figure is the share with the right function,
valid arguments and every check passed, against ``free``'s; quality, not speed, so no target.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from assistant.eval import tool_use
from benchmarks import Row
from benchmarks.bench_cpu import FILE, MODEL, stop
from benchmarks.bench_daemon import MODELS_DIR, start_daemon

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "eval"


@contextmanager
def daemon(tmp: Path, settings: Mapping[str, str]) -> Iterator[tool_use.Send]:
    """A daemon with ``settings`` added, as a :data:`tool_use.Send`."""
    import openai

    runtime = tmp / "run"
    proc = start_daemon(runtime, tmp / "data",
                        {"ASSISTANT_MODELS__CONTEXT_LENGTH": "4096", **settings})
    http = httpx.Client(transport=httpx.HTTPTransport(uds=str(runtime / "assistant.sock")),
                        timeout=600)
    try:
        yield tool_use.openai_send(openai.OpenAI(
            base_url="http://assistant/v1", api_key="unused", http_client=http))
    finally:
        http.close()
        stop(proc)


def run() -> list[Row | str]:
    if not (MODELS_DIR / FILE).exists():
        return [Row(f"{MODEL}: not installed", 0, 0, "", "skip")]
    tool_set = tool_use.load(DATA / "tool-use.jsonl", DATA / "tool-use-tools.json")
    with tempfile.TemporaryDirectory(prefix="asb-", dir="/tmp") as tmp:
        daemons = itertools.count()
        verdicts = tool_use.run_modes(
            lambda settings: daemon(Path(tmp) / str(next(daemons)), settings), tool_set, MODEL)
    every = [v for vs in verdicts.values() for v in vs]
    refused = sum(v.refused is not None for v in every)
    target = f"reported ({refused} requests refused)" if refused else "reported"
    base = tool_use.summarize(verdicts[tool_use.BASELINE]).correct[0]
    return [tool_use.table(verdicts), *tool_use.failures(every),
            *(Row(f"{MODEL}: tool use right, {mode} ÷ {tool_use.BASELINE}",
                  tool_use.summarize(verdicts[mode]).correct[0], base, "share", target)
              for mode in verdicts if mode != tool_use.BASELINE)]


if __name__ == "__main__":
    for row in run():
        print(row if isinstance(row, str) else row.line())
