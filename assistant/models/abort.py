"""Stopping llama.cpp while it reads a prompt: its abort callback, polled between the nodes
of a decode's graph."""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import llama_cpp

# How often a watcher asks whether the reads under way are still wanted (seconds).
POLL = 0.02

# ggml calls the abort callback after every node of a graph (hundreds per decode). A Python
# callback takes the GIL each time, and waits for it while another thread of the host holds it:
# a 17-token read took 0.8 s instead of 0.1 s while a state was being saved. The callback is
# therefore the C library's strlen, given a one-byte flag: "" (0, go on) or "\x01" (1, stop). It
# answers without Python; a watcher thread sets the flag.
_STRLEN = ctypes.CDLL(None).strlen


class Abort:
    """llama.cpp's abort callback for one context, armed only while prompts are read."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self._flag = ctypes.create_string_buffer(2)
        # Kept on the instance: llama.cpp holds only pointers to them.
        self._callback = ctypes.cast(_STRLEN, llama_cpp.ggml_abort_callback)
        self._none = llama_cpp.ggml_abort_callback()  # NULL: no callback
        self._check: Callable[[], bool] | None = None
        self._armings = 0  # which arming a watcher's answer belongs to
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._closed = False
        self.fired = False
        threading.Thread(target=self._watch, name="abort", daemon=True).start()

    def _watch(self) -> None:
        while True:
            self._go.wait()
            if self._closed:
                return
            with self._lock:
                check, arming = self._check, self._armings
            if check is not None and check():
                with self._lock:
                    if arming == self._armings:  # still the arming it was asked for
                        self._flag.value = b"\x01"
                        self.fired = True
                        self._go.clear()
                continue
            time.sleep(POLL)

    @contextlib.contextmanager
    def armed(self, check: Callable[[], bool]) -> Iterator[None]:
        """While inside: llama.cpp stops the decode under way soon after ``check`` is true."""
        with self._lock:
            self._armings += 1
            self._check, self.fired = check, False
            self._flag.value = b""
        llama_cpp.llama_set_abort_callback(self._ctx, self._callback,
                                           ctypes.cast(self._flag, ctypes.c_void_p))
        self._go.set()
        try:
            yield
        finally:
            llama_cpp.llama_set_abort_callback(self._ctx, self._none, None)
            with self._lock:
                self._check = None
                self._armings += 1
                self._go.clear()

    def close(self) -> None:
        self._closed = True
        self._go.set()
