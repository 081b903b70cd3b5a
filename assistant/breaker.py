"""The circuit breaker: which failures count against a skill, and what happens when they pile up.

A failure has one of three owners (:func:`fault_of`):

- ``caller``: the request cannot be served as asked — a prompt past the context
  (``context_length_exceeded``), a bad parameter, a file that cannot be read. Anything the error
  table answers with a 4xx (:class:`~assistant.errors.RequestError`,
  :class:`~assistant.errors.InputError`, a refused chat template). The caller can fix it.
- ``infrastructure``: the model host stopped or cannot load the model, the queue is full, the
  store is unavailable (:class:`~assistant.errors.ModelError`,
  :class:`~assistant.errors.DaemonError`, :class:`~assistant.errors.StorageError`). The daemon
  heals these itself (the host restarts on the next request).
- ``skill``: anything else the skill's code raised, and a skill cut by the timeout.

Only ``skill`` failures count. Each skill (and each hook of each plugin) has its own
:class:`Breaker`: ``max_failures`` skill failures in a row disable it; after ``cooldown``
seconds it is ``retrying`` — one turn for it runs as a trial while the others still fall back:
success re-arms it, failure disables it again for twice as long (at most :data:`MAX_COOLDOWN`).
``assistant plugins enable`` re-arms it at once, and a restart forgets every breaker. Failures
of the caller or the infrastructure neither count nor re-arm: they say nothing about the skill.

A turn is admitted with a :class:`Ticket` (:meth:`Breaker.admit`) and settles it once: the
result of a turn admitted before the breaker last tripped or was re-armed says nothing about
the skill now, and is ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from assistant.error_codes import http_error
from assistant.errors import AssistantError, DaemonError, ModelError, StorageError

Fault = Literal["caller", "infrastructure", "skill"]
State = Literal["available", "disabled", "retrying"]

MAX_COOLDOWN = 3600.0


def fault_of(exc: BaseException) -> Fault:
    """Who ``exc``, raised while a skill ran, is the fault of (see the module's docstring)."""
    if isinstance(exc, AssistantError):
        status = http_error(exc)[0]
        if 400 <= status < 500:
            return "caller"
        if isinstance(exc, ModelError | DaemonError | StorageError):
            return "infrastructure"
    return "skill"


@dataclass
class Ticket:
    """One turn's admission to a skill: the breaker's epoch then, and whether it is the trial."""

    epoch: int
    trial: bool = False
    settled: bool = False


@dataclass
class Breaker:
    """The failures in a row of one skill (or one plugin's hooks), and whether it may run."""

    name: str
    max_failures: int = 5
    cooldown: float = 60.0  # seconds disabled before a trial; 0: until re-armed by hand
    clock: Callable[[], float] = time.monotonic
    failures: int = 0  # skill failures in a row
    trips: int = 0  # times disabled in a row (the cooldown doubles with each)
    opened_at: float | None = None  # on the clock; None while not disabled
    last_error: str | None = None
    last_traceback: str | None = None
    last_failure_at: float | None = None  # wall-clock time
    epoch: int = 0  # bumped when it trips or is re-armed: older tickets' results are ignored
    trial_running: bool = False  # a trial turn is running (only while retrying)

    @property
    def wait(self) -> float:
        """Seconds the skill stays disabled after this trip."""
        return min(self.cooldown * 2.0 ** max(self.trips - 1, 0), MAX_COOLDOWN)

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "available"
        if self.cooldown and self.clock() >= self.opened_at + self.wait:
            return "retrying"
        return "disabled"

    def retry_in(self) -> float | None:
        """Seconds until the trial turn; None when not disabled or only a re-arm helps."""
        if self.opened_at is None or not self.cooldown:
            return None
        return max(0.0, self.opened_at + self.wait - self.clock())

    def allows(self) -> bool:
        """Whether a turn may run now: available, or retrying with no trial running."""
        state = self.state
        return state == "available" or (state == "retrying" and not self.trial_running)

    def admit(self, force: bool = False) -> Ticket | None:
        """Admit a turn: a ticket, the trial's while retrying; None when it must fall back.
        ``force`` admits it even so (the last resort), not as the trial."""
        state = self.state
        if state == "available":
            return Ticket(self.epoch)
        if state == "retrying" and not self.trial_running:
            self.trial_running = True
            return Ticket(self.epoch, trial=True)
        return Ticket(self.epoch) if force else None

    def _settle(self, ticket: Ticket | None) -> bool:
        """Settle ``ticket``; whether its result still speaks for the skill."""
        if ticket is None:
            return True
        if ticket.settled:
            return False
        ticket.settled = True
        if ticket.epoch != self.epoch:
            return False
        if ticket.trial:
            self.trial_running = False
        return True

    def release(self, ticket: Ticket | None) -> None:
        """The turn ended saying nothing about the skill (cancelled, the caller's or the
        infrastructure's error): a trial's place goes to the next turn."""
        self._settle(ticket)

    def succeeded(self, ticket: Ticket | None = None) -> None:
        if self._settle(ticket):
            if self.opened_at is not None:
                self.epoch += 1
            self.failures, self.trips, self.opened_at = 0, 0, None
            self.trial_running = False

    def failed(self, error: str, traceback: str | None = None,
               ticket: Ticket | None = None) -> bool:
        """Count a skill failure; True when it (re)disables the skill."""
        if not self._settle(ticket):
            return False
        self.failures += 1
        self.last_error, self.last_traceback = error, traceback
        self.last_failure_at = time.time()
        if (ticket is not None and ticket.trial) or self.state == "retrying" or (
                self.opened_at is None and self.failures >= self.max_failures):
            self.trips += 1
            self.opened_at = self.clock()
            self.epoch += 1
            self.trial_running = False
            return True
        return False

    def reset(self) -> None:
        """Re-arm: available, no failures counted (``assistant plugins enable``)."""
        self.failures, self.trips, self.opened_at = 0, 0, None
        self.epoch += 1
        self.trial_running = False

    def why(self) -> str:
        """Why it is not available, for notices, errors and route explanations."""
        retry = self.retry_in()
        when = ("until `assistant plugins enable` or a restart" if retry is None
                else f"for {max(1, round(retry))} s more")
        return (f"disabled after {self.failures} failures in a row (last: {self.last_error}), "
                f"{when}")

    def to_dict(self) -> dict[str, Any]:
        retry = self.retry_in()
        return {"state": self.state, "failures": self.failures, "error": self.last_error,
                "traceback": self.last_traceback, "failed_at": self.last_failure_at,
                "retry_in_s": None if retry is None else round(retry, 1),
                "trial_running": self.trial_running}
