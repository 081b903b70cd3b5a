"""Stopping llama.cpp while it reads a prompt: its abort callback, polled between the nodes
of a decode's graph."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import llama_cpp


class Abort:
    """llama.cpp's abort callback for one context, polled after every graph node.

    Armed only while a prompt is read. Each poll is a call into Python, after every node of a
    decode's graph (about 600 for smollm2-135m): nothing next to a batch of prompt tokens,
    which takes seconds, but a cost on every generated token, which takes milliseconds.
    """

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self._check: Callable[[], bool] | None = None
        self.fired = False
        # Kept on the instance: llama.cpp holds only a pointer to it.
        self._callback = llama_cpp.ggml_abort_callback(self._poll)
        self._none = llama_cpp.ggml_abort_callback()  # NULL: no callback

    def _poll(self, _data: Any) -> bool:
        check = self._check
        if check is not None and check():
            self.fired = True
            return True
        return False

    @contextlib.contextmanager
    def armed(self, check: Callable[[], bool]) -> Iterator[None]:
        self._check, self.fired = check, False
        llama_cpp.llama_set_abort_callback(self._ctx, self._callback, None)
        try:
            yield
        finally:
            llama_cpp.llama_set_abort_callback(self._ctx, self._none, None)
            self._check = None
