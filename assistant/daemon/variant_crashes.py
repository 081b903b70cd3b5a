"""The llama.cpp CPU variants that killed a model host with SIGILL, kept for the daemon's life.

A variant can pass every check of :mod:`assistant.models.cpu` and still die at run time with
an invalid opcode (ggml's AMX code did, on a VM that granted AMX). Left alone, the restarted
host would load the same variant and die again, and every request would fail. So before a
host's first chat model the manager asks it which variant it loaded (the ``cpu`` op, which
answers with the host's pid); when a request fails because that pid ended by SIGILL, while
loading a model or running one, a variant "auto" chose is avoided by every later host (the
next loads the one below it). Nothing is stepped below the portable baseline
(:data:`cpu.BASELINE`), and a variant ``[models] cpu_variant`` forces is never stepped down:
their requests fail saying so.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from assistant.errors import HostError, HostStopped, ModelLoadError
from assistant.models import cpu

log = logging.getLogger("assistant.models")

KILLED_BY_SIGILL = -signal.SIGILL  # a child's returncode when SIGILL ended it


class VariantCrashes:
    def __init__(self, forced: str) -> None:
        self.forced = forced  # models.cpu_variant: "auto", or the variant it forces
        self.avoid: list[str] = []  # variants "auto" chose that died with SIGILL, in turn
        self.host: tuple[int, str] | None = None  # (pid, variant) the latest host reported
        self._blamed: int | None = None  # the host whose SIGILL was last dealt with

    def running(self, reply: dict[str, Any]) -> None:
        """Note the host's answer to ``cpu``: its pid and the variant it loaded."""
        variant = (reply.get("cpu_variant") or {}).get("variant")
        self.host = (int(reply["pid"]), str(variant)) if variant else None

    def _died_of(self, exc: HostError) -> str | None:
        """The variant whose SIGILL ended the host ``exc`` reports, stepped down from (once
        per host: each request it held fails with the same facts); None when it ended
        otherwise, or ran a variant it never reported."""
        if exc.returncode != KILLED_BY_SIGILL or self.host is None or exc.pid != self.host[0]:
            return None
        variant = self.host[1]
        if self._blamed == exc.pid:
            return variant
        self._blamed = exc.pid
        if self.forced != "auto":
            log.error("the model host died with SIGILL (invalid instruction) running CPU "
                      "variant %s, which models.cpu_variant forces: set models.cpu_variant "
                      '= "auto"', variant, extra={"cpu_variant": variant})
        elif not cpu.above_baseline(variant):
            log.error("the model host died with SIGILL (invalid instruction) running CPU "
                      "variant %s, at or below the baseline %s: not stepped down", variant,
                      cpu.BASELINE, extra={"cpu_variant": variant, "avoid": list(self.avoid)})
        else:
            if variant not in self.avoid:
                self.avoid.append(variant)
            log.warning("CPU variant %s died with SIGILL (invalid instruction) in the model "
                        "host: the next host loads the variant below it", variant,
                        extra={"cpu_variant": variant, "avoid": list(self.avoid)})
        return variant

    def request_error(self, model: str, exc: HostError) -> Exception | None:
        """What a request fails with when its host died by SIGILL on a variant it reported;
        None when it did not."""
        variant = self._died_of(exc)
        if variant is None:
            return None
        if self.forced != "auto":
            return ModelLoadError(
                f"CPU variant {variant!r}, which models.cpu_variant forces, crashed with "
                f"SIGILL on this machine (an invalid instruction) running {model!r}",
                'Set models.cpu_variant = "auto" and restart the daemon.')
        if not cpu.above_baseline(variant):
            return ModelLoadError(
                f"the model host died with SIGILL (an invalid instruction) running {model!r} "
                f"on CPU variant {variant!r}; variants at or below the baseline "
                f"({cpu.BASELINE}) are not stepped down",
                'Set models.cpu_variant to a variant that runs here ("x64" needs no '
                "extensions) and restart the daemon.")
        return HostStopped(
            f"the model host died with SIGILL running {model!r} on CPU variant {variant!r}; "
            "it restarts with the variant below it", "Try the request again.")
