"""The batching engine saving states (an idle save, a request taking a sequence) under the real
runner and smollm2-135m, run in a process of its own (llama.cpp in the test process would
outlive it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import TEST_MODELS_DIR, require_models

pytestmark = pytest.mark.integration

SCRIPT = r"""
import sys, threading, time
from assistant.models import batch, cpu
from assistant.models.llama import LlamaRunner

cpu.load()
runner = LlamaRunner(sys.argv[1], n_ctx=1024, n_threads=2, parallel=2)
slow_put = runner.states.put

def put(*args, **kwargs):  # a slow disk: the idle save holds the states' lock a while
    time.sleep(1.5)
    slow_put(*args, **kwargs)

runner.states.put = put

def ask(text, tag):
    messages = [{"role": "user", "content": text}]
    params = {"max_tokens": 4, "temperature": 0, "cache_tag": tag}
    for _ in runner.chat(messages, params, cancelled=lambda: False):
        pass

facts = " ".join(f"Fact {i}: {i} squared is {i * i}." for i in range(30))
ask("Remember these. " + facts, "a")     # sequence 0, unsaved
ask("Tell me about owls. " * 20, "c")    # sequence 1, unsaved
time.sleep(batch.IDLE_SAVE + 0.5)        # the idle save of "c" is writing now
# A third conversation takes the least recently used sequence, "a"'s, saving it first: it
# waits for the states' lock while it holds the context's, which the idle save takes back.
done = threading.Event()
threading.Thread(target=lambda: (ask("Write a poem about rivers.", "b"), done.set()),
                 daemon=True).start()
print("done" if done.wait(60) else "deadlocked", flush=True)
"""


def test_a_request_saving_a_sequence_while_an_idle_save_writes_does_not_deadlock(
    tmp_path: Path,
) -> None:
    require_models()
    model = TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(model)], capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert out.stdout.strip().splitlines()[-1:] == ["done"], (out.stdout, out.stderr[-2000:])
