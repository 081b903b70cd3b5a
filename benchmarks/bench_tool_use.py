"""Tool use on qwen2.5-coder-0.5b, constrained against not: the report of
tests/quality/test_tool_use_quality.py, for docs/quality.md.

    python -m benchmarks tool_use     # the Markdown table, the cases scored wrong, one row

One daemon; the project's 30 cases (tests/data/eval/tool-use.jsonl) through the openai SDK,
greedy, with ``tool_choice="required"`` (a grammar makes the call) and with ``"auto"`` (the
baseline). The row's figure is the share with the right function, valid arguments and every
check passed; quality, not speed, so no target.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

from assistant.eval import tool_use
from benchmarks import Row
from benchmarks.bench_cpu import FILE, MODEL, stop
from benchmarks.bench_daemon import MODELS_DIR, start_daemon

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "eval"


def run() -> list[Row | str]:
    import openai

    if not (MODELS_DIR / FILE).exists():
        return [Row(f"{MODEL}: not installed", 0, 0, "", "skip")]
    tool_set = tool_use.load(DATA / "tool-use.jsonl", DATA / "tool-use-tools.json")
    with tempfile.TemporaryDirectory(prefix="asb-", dir="/tmp") as tmp:
        runtime = Path(tmp) / "run"
        proc = start_daemon(runtime, Path(tmp) / "data",
                            {"ASSISTANT_MODELS__CONTEXT_LENGTH": "4096"})
        http = httpx.Client(transport=httpx.HTTPTransport(uds=str(runtime / "assistant.sock")),
                            timeout=600)
        try:
            send = tool_use.openai_send(openai.OpenAI(
                base_url="http://assistant/v1", api_key="unused", http_client=http))
            verdicts = {mode: tool_use.run(send, tool_set, MODEL, mode)
                        for mode in tool_use.MODES}
        finally:
            http.close()
            stop(proc)
    constrained, auto = verdicts["constrained"], verdicts["auto"]
    ours, base = (tool_use.summarize(v).correct[0] for v in (constrained, auto))
    refused = sum(v.refused is not None for v in constrained + auto)
    return [tool_use.table(constrained, auto), *tool_use.failures(constrained + auto),
            Row(f"{MODEL}: tool use right, required ÷ auto", ours, base, "share",
                f"reported ({refused} requests refused)" if refused else "reported")]


if __name__ == "__main__":
    for row in run():
        print(row if isinstance(row, str) else row.line())
