"""The search gate (:mod:`assistant.daemon.search_gate`): what a cancel does to a search
that waits for a thread, and to one that runs."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from assistant.config import load_settings
from assistant.daemon.search_gate import SearchGate


def test_a_search_cancelled_while_it_waits_never_runs() -> None:
    gate = SearchGate(load_settings({"search": {"concurrency": 1}}).search)
    release, ran = threading.Event(), []

    async def main() -> None:
        first = asyncio.create_task(gate.run(release.wait))
        second = asyncio.create_task(gate.run(lambda: ran.append(1)))
        try:
            await asyncio.sleep(0.1)
            assert gate.running == 1 and gate.waiting == 1
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
        finally:
            release.set()  # else a failure above would leave the gate's thread waiting
        await first

    asyncio.run(main())
    assert ran == []
    assert gate.running == 0 and gate.waiting == 0


def test_a_search_cancelled_while_it_runs_is_waited_for_and_its_error_taken(
        caplog: pytest.LogCaptureFixture) -> None:
    """The caller stops a running search with its cancel event; the gate waits for the thread
    (twice cancelled too) and reads the error the search ends with: no "exception was never
    retrieved" in the log, as an attacker's disconnects would fill it."""
    gate = SearchGate(load_settings().search)
    stop = threading.Event()

    def search() -> None:
        stop.wait()
        raise RuntimeError("stopped by its cancel event")

    async def main() -> None:
        task = asyncio.create_task(gate.run(search))
        try:
            await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.sleep(0.05)
            task.cancel()  # a second cancel does not end the wait for the thread
            await asyncio.sleep(0.05)
            assert not task.done() and gate.running == 1
        finally:
            stop.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gate.running == 0 and gate.waiting == 0

    asyncio.run(main())
    gc.collect()
    assert "never retrieved" not in caplog.text
