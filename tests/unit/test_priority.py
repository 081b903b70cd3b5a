"""Background work (embedding jobs, history searches) runs at a lower CPU priority than the
replies being decoded beside it (:mod:`assistant.priority`)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from assistant.config import load_settings
from assistant.daemon.search_gate import SearchGate
from assistant.priority import BACKGROUND_NICE, background


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _may_lower() -> bool:
    """Whether this system lets a thread lower its priority (a sandbox may not)."""
    seen: list[int] = []
    probe = threading.Thread(target=lambda: (background(), seen.append(_nice())))
    probe.start()
    probe.join()
    return seen != [_nice()] or _nice() == 19


pytestmark = pytest.mark.skipif(sys.platform != "linux" or not _may_lower(),
                                reason="niceness per thread (Linux), which may be raised here")


def test_background_lowers_only_the_calling_thread_and_the_threads_it_starts() -> None:
    own = _nice()
    seen: dict[str, int] = {}

    def lowered() -> None:
        background()
        seen["lowered"] = _nice()
        child = threading.Thread(target=lambda: seen.update(child=_nice()))
        child.start()
        child.join()

    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    assert seen == {"lowered": min(19, own + BACKGROUND_NICE),
                    "child": min(19, own + BACKGROUND_NICE)}
    assert _nice() == own  # the caller's thread is untouched


def test_searches_run_on_lowered_threads_and_the_loop_keeps_its_priority() -> None:
    own = _nice()
    gate = SearchGate(load_settings().search)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(gate.run(_nice) for _ in range(3))))

    assert asyncio.run(main()) == [min(19, own + BACKGROUND_NICE)] * 3
    assert _nice() == own
    assert gate.running == 0 and gate.waiting == 0
