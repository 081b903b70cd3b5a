"""Background work gives way to replies being written.

On two cores a chat reply decodes on two llama.cpp threads that meet at every step of the
graph; any other busy thread delays one of them and so both. Under an embeddings flood and a
few long searches a reply decoded at 2-8 tokens a second against 80 alone (smollm2, the
availability test of ``tests/reliability``). Embedding jobs and history searches are
background work: their threads run at a lower CPU priority, so they take what the replies
leave and all of it when no reply is being written.

On Linux niceness belongs to a thread, and threads it starts inherit it. It can be raised
without privileges but not lowered again, so only threads that do nothing else are lowered.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

BACKGROUND_NICE = 10  # added to the process's own; a weight of about a tenth at +10


def background() -> None:
    """Lower the calling thread's CPU priority (and that of the threads it starts later)."""
    if sys.platform != "linux":  # elsewhere PRIO_PROCESS with a thread id names a process
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # a sandbox that forbids it: run as before
        lowered = min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE)
        os.setpriority(os.PRIO_PROCESS, tid, lowered)
