"""The model host keeps a cancel only while its target is under way.

The daemon sends ``cancel`` whenever a caller stopped waiting before it read the reply, which
is often after the host has answered; such cancels must not pile up in the host.
"""

from __future__ import annotations

import io
import json

from assistant.models.host import Host, _Output


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
