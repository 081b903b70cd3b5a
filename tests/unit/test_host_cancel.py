"""The model host keeps a cancel only while its target is under way.

The daemon sends ``cancel`` whenever a caller stopped waiting before it read the reply, which
is often after the host has answered; such cancels must not pile up in the host.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from assistant.models.host import Host, _Output
from assistant.models.pieces import Piece


def _host() -> tuple[Host, io.BytesIO]:
    out = io.BytesIO()
    return Host(_Output(out)), out


def _run_next(host: Host) -> None:
    request = host.chat_jobs.get_nowait()
    assert request is not None
    host.run(request)


def test_a_cancel_after_the_job_answered_is_not_kept() -> None:
    host, out = _host()
    host.submit({"id": "1", "op": "unload", "model": "none"})
    _run_next(host)
    assert json.loads(out.getvalue()) == {"id": "1", "ok": {}}
    for n in range(1000):
        host.submit({"id": f"c{n}", "op": "cancel", "target": "1"})
        host.submit({"id": f"c{n}", "op": "cancel", "target": f"never-sent-{n}"})
    assert host.cancelled == set()
    assert host.in_flight == set()


def test_a_cancel_of_a_job_under_way_is_kept_until_it_ends() -> None:
    host, _ = _host()
    host.submit({"id": "2", "op": "unload", "model": "none"})
    host.submit({"id": "c2", "op": "cancel", "target": "2"})
    assert host.cancelled == {"2"}
    _run_next(host)
    assert host.cancelled == set()
    assert host.in_flight == set()


def test_an_embed_job_that_cannot_start_is_not_left_in_flight() -> None:
    host, out = _host()
    host.submit({"id": "3", "op": "embed", "model": "not-loaded", "texts": ["a"]})
    host.embed_jobs.put(None)
    host.embed_worker()
    assert json.loads(out.getvalue())["error"]["type"] == "KeyError"
    host.submit({"id": "c3", "op": "cancel", "target": "3"})
    assert host.cancelled == set()
    assert host.in_flight == set()


def test_a_cancel_stops_the_embedding_batch_being_computed() -> None:
    """Issue 21: a cancel sets the running batch's ``RunOptions.terminate``: the job answers
    ``Cancelled`` within a fraction of the batch's time, not after it."""
    import threading
    import time

    from assistant.models.onnx import OnnxEmbedder
    from tests.conftest import TEST_MODELS_DIR
    from tests.integration.conftest import require_models

    require_models()
    host, out = _host()
    host.embedders["minilm"] = OnnxEmbedder(
        str(TEST_MODELS_DIR / "all-MiniLM-L6-v2.int8.onnx"),
        str(TEST_MODELS_DIR / "all-MiniLM-L6-v2.tokenizer.json"), n_threads=2)
    long = " ".join(f"w{i}ord" for i in range(300))  # past the model's 256 tokens
    texts = [f"{i} {long}" for i in range(32)]
    worker = threading.Thread(target=host.embed_worker, daemon=True)
    worker.start()

    def timed(rid: str, cancel_after: float | None) -> float:
        started = time.perf_counter()
        host.submit({"id": rid, "op": "embed", "model": "minilm", "texts": texts,
                     "batch": len(texts)})  # one batch: only terminate can stop it early
        if cancel_after is not None:
            time.sleep(cancel_after)
            host.submit({"id": f"c{rid}", "op": "cancel", "target": rid})
        while rid in host.in_flight:
            time.sleep(0.01)
        return time.perf_counter() - started

    whole = timed("full", None)
    assert json.loads(out.getvalue().splitlines()[-1])["id"] == "full"
    cut = timed("cut", 0.2)
    host.embed_jobs.put(None)
    worker.join(10)
    answer = json.loads(out.getvalue().splitlines()[-1])
    assert answer["id"] == "cut" and answer["error"]["type"] == "Cancelled", answer
    assert cut < 0.2 + whole / 3, (cut, whole)
    assert host.embedding == {} and host.in_flight == set() and host.cancelled == set()


class _Runner:
    """A chat model that writes one piece, then reports whether the host cancelled it."""

    def __init__(self) -> None:
        self.cancelled_after_send: bool | None = None

    def chat(self, messages: Any, params: Any, cancelled: Callable[[], bool]) -> Iterator[Piece]:
        yield Piece("a")
        self.cancelled_after_send = cancelled()
        yield Piece("", finish_reason="cancelled" if self.cancelled_after_send else "stop")


def test_a_daemon_gone_ends_the_replies_without_a_pipe_error() -> None:
    # The daemon died: its end of the host's stdout is closed, and writing to it fails.
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "wb") as stream:
        host = Host(_Output(stream))
        runner = _Runner()
        host.chat_models["m"] = runner  # type: ignore[assignment]
        host.run({"id": "1", "op": "chat", "model": "m", "messages": [], "params": {}})
        assert host.out.gone and runner.cancelled_after_send  # the reply stops, nothing raised
        host.submit({"id": "2", "op": "unload", "model": "none"})
        _run_next(host)  # its reply goes nowhere
        assert host.in_flight == set()
