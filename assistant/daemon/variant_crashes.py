"""The llama.cpp CPU variants that killed a model host with SIGILL, kept for the daemon's life.

A variant can pass every check of :mod:`assistant.models.cpu` and still die at run time with
an invalid opcode (ggml's AMX code did, on a VM that granted AMX). Left alone, the restarted
host would load the same variant and die again, and every request would fail. So the manager
notes the variant each host reports when it loads a chat model; when that host ends by SIGILL,
a variant "auto" chose is avoided by every later host (the next loads the one below it), and
one that ``[models] cpu_variant`` forces is never stepped down: its requests fail saying so.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from assistant.errors import HostError, HostStopped, ModelLoadError

log = logging.getLogger("assistant.models")

KILLED_BY_SIGILL = -signal.SIGILL  # a child's returncode when SIGILL ended it


class VariantCrashes:
    def __init__(self, forced: str) -> None:
        self.forced = forced  # models.cpu_variant: "auto", or the variant it forces
        self.avoid: list[str] = []  # variants "auto" chose that died with SIGILL, in turn
        self._running: tuple[int, str] | None = None  # (host pid, the variant it loaded)
        self._died: str | None = None  # the variant the last host to end died of, if it did

    def loaded(self, pid: int | None, cpu_variant: dict[str, Any] | None) -> None:
        """Host ``pid`` loaded a chat model on ``cpu_variant`` (``cpu.load``'s answer)."""
        if pid is not None and cpu_variant and cpu_variant.get("variant"):
            self._running = (pid, str(cpu_variant["variant"]))

    def host_exited(self, pid: int, code: int) -> None:
        """Host ``pid`` ended with ``code`` (``HostProcess.on_exit``)."""
        running, self._died = self._running, None
        if running is None or running[0] != pid:
            return
        self._running = None
        variant = running[1]
        if code != KILLED_BY_SIGILL:
            return
        self._died = variant
        if self.forced != "auto":
            log.error("the model host died with SIGILL (invalid instruction) running CPU "
                      "variant %s, which models.cpu_variant forces: set models.cpu_variant "
                      '= "auto"', variant, extra={"cpu_variant": variant})
            return
        if variant not in self.avoid:
            self.avoid.append(variant)
        log.warning("CPU variant %s died with SIGILL (invalid instruction) in the model host: "
                    "the next host loads the variant below it", variant,
                    extra={"cpu_variant": variant, "avoid": list(self.avoid)})

    def request_error(self, model: str, exc: HostError) -> Exception | None:
        """What a request in flight when its host died of its CPU variant fails with; None
        when the host did not die that way."""
        variant = self._died
        if exc.kind != "HostCrashed" or variant is None:
            return None
        if self.forced != "auto":
            return ModelLoadError(
                f"the model host died with SIGILL (an invalid instruction) running {model!r} "
                f"on CPU variant {variant!r}, which models.cpu_variant forces: this machine "
                "cannot run it", 'Set models.cpu_variant = "auto" and restart the daemon.')
        return HostStopped(
            f"the model host died with SIGILL running {model!r} on CPU variant {variant!r}; "
            "it restarts with the variant below it", "Try the request again.")
