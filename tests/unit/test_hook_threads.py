"""Sync hooks run on reused threads; a stuck one never holds up the next call."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from assistant.hook_threads import HookThreads


def _thread() -> int:
    return threading.get_ident()


def test_calls_one_after_another_reuse_one_thread() -> None:
    threads = HookThreads()

    async def main() -> set[int]:
        return {await threads.call(_thread, {}) for _ in range(20)}

    assert len(asyncio.run(main())) == 1
    assert threads.idle == 1


def test_a_stuck_call_is_left_behind_and_the_next_runs_on_another_thread() -> None:
    threads = HookThreads()
    release = threading.Event()

    async def main() -> tuple[int, int]:
        first = await threads.call(_thread, {})
        stuck = threads.call(release.wait, {"timeout": 30})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stuck), 0.05)
        second = await asyncio.wait_for(threads.call(_thread, {}), 5)
        release.set()
        assert await stuck is True
        return first, second

    first, second = asyncio.run(main())
    assert first != second


def test_an_exception_reaches_the_caller() -> None:
    threads = HookThreads()

    def broken() -> None:
        raise ValueError("hook bug")

    async def main() -> None:
        with pytest.raises(ValueError, match="hook bug"):
            await threads.call(broken, {})

    asyncio.run(main())


def test_an_idle_thread_ends_after_its_time() -> None:
    threads = HookThreads(idle_s=0.05)

    async def main() -> int:
        return await threads.call(_thread, {})

    ident = asyncio.run(main())
    deadline = time.monotonic() + 5
    while threads.idle and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threads.idle == 0
    time.sleep(0.1)
    assert ident not in {t.ident for t in threading.enumerate()}
