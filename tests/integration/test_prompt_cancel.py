"""A cancel, or the host's shutdown, stops a long prompt read within a batch, not after it.

These drive the real model host over its protocol (JSON lines on stdin and stdout, as the
daemon's ``HostProcess`` does) with the real smollm2-135m. Bounds are fractions of the full
read of the same prompt, timed in the same run: the machines these run on are noisy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import require_models
from tests.integration.host_driver import WAIT, Host

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

BATCH = 512  # the runner's n_batch: a cancelled read keeps whole batches
FACTS = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(130))
LONG = [{"role": "user", "content": FACTS + " Which fact mentions 7?"}]
GREEDY = {"max_tokens": 8, "temperature": 0}


def start_host(log: Path) -> Host:
    require_models()
    host = Host(log)
    host.load()
    return host


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The prompt read whole by a fresh host: its token count, read time and greedy reply."""
    host = start_host(tmp_path_factory.mktemp("reference") / "host.log")
    try:
        tokens = host.result(host.send("count", model="smollm2", messages=LONG))["tokens"]
        text, done = host.finish(host.send("chat", model="smollm2", messages=LONG,
                                           params=GREEDY))
    finally:
        host.close()
    assert 2000 < tokens < 4096 - GREEDY["max_tokens"]
    assert done["timings"]["evaluated_tokens"] == tokens
    yield {"tokens": tokens, "read_s": done["timings"]["prompt_s"], "text": text}


def reading(host: Any, seconds: float) -> str:
    """Send the long prompt and let the host read it for ``seconds``; the request id."""
    rid = host.send("chat", model="smollm2", messages=LONG, params=GREEDY)
    time.sleep(seconds)
    return str(rid)


def test_a_cancel_stops_the_prompt_read_and_the_next_request_reuses_what_was_read(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    host = start_host(tmp_path / "host.log")
    try:
        rid = reading(host, reference["read_s"] / 2)  # a couple of batches in
        cancelled_at = time.monotonic()
        host.write({"id": "c1", "op": "cancel", "target": rid})
        text, done = host.finish(rid)
        took = time.monotonic() - cancelled_at

        assert text == ""
        assert done["finish_reason"] == "cancelled"
        assert done["prompt_tokens"] == reference["tokens"]
        assert done["completion_tokens"] == 0
        read = done["timings"]["evaluated_tokens"]
        # Whole batches were kept, and the batch being read was stopped, not finished.
        assert read % BATCH == 0 and BATCH <= read < reference["tokens"], done
        assert took < reference["read_s"] / 10, (
            f"the cancel took {took:.2f} s; the whole prompt reads in {reference['read_s']:.2f} s")

        # The same prompt again: it starts after the batches read, and answers as a fresh
        # host that read it whole does.
        text, done = host.finish(host.send("chat", model="smollm2", messages=LONG,
                                           params=GREEDY))
        assert done["finish_reason"] in {"stop", "length"}
        assert done["timings"]["cached_tokens"] == read
        assert done["timings"]["evaluated_tokens"] == reference["tokens"] - read
        assert text == reference["text"]
    finally:
        host.close()


def test_shutdown_during_a_prompt_read_ends_the_host_within_a_batch(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    host = start_host(tmp_path / "host.log")
    try:
        rid = reading(host, reference["read_s"] / 4)
        stopped_at = time.monotonic()
        host.write({"id": "0", "op": "shutdown"})
        assert host.proc.wait(WAIT) == 0
        took = time.monotonic() - stopped_at
        _, done = host.finish(rid)  # the reply was still finished, as cancelled
        assert done["finish_reason"] == "cancelled"
        assert done["timings"]["evaluated_tokens"] < reference["tokens"]
        assert took < reference["read_s"] / 10, (
            f"the host took {took:.2f} s to stop; the prompt reads in {reference['read_s']:.2f} s")
    finally:
        host.close()
