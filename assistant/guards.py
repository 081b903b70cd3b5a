"""Guards: what may go into a turn, and what may come out of it.

A plugin registers :class:`Guard` objects through ``register_guards``. For each user turn,
before its text is stored, routed or shown to any model, every guard's :meth:`Guard.check`
reads it and may let it pass (``None``), rewrite it (:meth:`Verdict.rewrite`: a secret
redacted) or block the turn (:meth:`Verdict.block`: the user sees the reason, and the refusal
is stored as the reply). While the reply streams, :meth:`Guard.filter` sees the text that has
not been released yet and says how much of it to release, as what (redacted), and whether to
stop the reply there (:class:`Filtered`). Text reaches the client and the store only once
every guard released it.

Each call runs under ``plugins.hook_timeout`` (a sync method on a thread of its own, so a slow
one cannot stall the daemon); one that raises or runs late is reported as a ``guard`` event
with action ``error`` and a notice, counts against that guard's breaker, and the turn goes on
without it. Every decision is a :class:`GuardDecision`: a ``guard`` event for the client, and
stored with the reply (its route's ``guard`` list).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from assistant import wire
from assistant.skills import Turn

Action = Literal["block", "rewrite", "redact", "stop", "error"]
Stage = Literal["input", "output"]


@dataclass(frozen=True)
class Verdict:
    """A guard's answer on the user's text: rewrite it, or block the turn.

    ``reason`` is said to the user (for a block, it is the reply); ``kinds`` names what was
    found (``api_key``, a blocked topic…), for the event and the store.
    """

    action: Literal["block", "rewrite"]
    reason: str
    text: str | None = None  # the new text, for a rewrite
    kinds: tuple[str, ...] = ()

    @classmethod
    def block(cls, reason: str, kinds: tuple[str, ...] = ()) -> Verdict:
        return cls("block", reason, None, kinds)

    @classmethod
    def rewrite(cls, text: str, reason: str, kinds: tuple[str, ...] = ()) -> Verdict:
        return cls("rewrite", reason, text, kinds)


@dataclass(frozen=True)
class Filtered:
    """A guard's answer on the reply's pending text (what no guard has released yet).

    The first ``len(pending) - held`` characters are released as ``text`` (the same text, or
    redacted); the last ``held`` are kept for the next call, when more has arrived (the start
    of what may be a secret). ``stop`` ends the reply after ``text``, with that reason.
    ``reason`` and ``kinds`` say what was changed, when something was.
    """

    text: str
    held: int = 0
    stop: str | None = None
    reason: str = ""
    kinds: tuple[str, ...] = ()


class Guard:
    """Checks a turn's input, filters its output, or both: override :meth:`check`,
    :meth:`filter`, or both. ``name`` is what events, notices and the config call it; a
    guard reads its own ``[guards.<name>]`` section in :meth:`configure`.

    The methods may be ``async``. One object serves every turn, also at once: keep the state
    of a turn in the text it is given (``pending``), not in the guard.
    """

    name: ClassVar[str]
    enabled: bool = True  # False: never called (set it in configure, from the config)

    def configure(self, config: dict[str, Any]) -> None:
        """Called once, when the daemon starts, with the guard's ``[guards.<name>]`` section
        (empty when absent). Raise ``ValueError`` naming the key for a bad value: the plugin
        is then reported as failed."""

    def check(self, turn: Turn) -> Verdict | Awaitable[Verdict | None] | None:
        """The verdict on ``turn.text`` (what the user typed, after earlier guards' rewrites;
        ``turn.skill`` is the skill the client named, if any). ``None`` lets it pass."""
        return None

    def filter(self, turn: Turn, pending: str, final: bool,
               ) -> Filtered | Awaitable[Filtered | None] | None:
        """What becomes of ``pending``, the reply's text not yet released. ``final`` is True
        once the skill has ended: hold nothing back then. ``None`` releases it all as it is."""
        return None


@dataclass(frozen=True)
class GuardDecision:
    """One thing a guard did to a turn, as the client sees it and the store keeps it."""

    guard: str
    action: Action
    stage: Stage
    reason: str
    kinds: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"guard": self.guard, "action": self.action, "stage": self.stage,
                "reason": self.reason, "kinds": list(self.kinds)}

    def event(self) -> wire.GuardEvent:
        return wire.GuardEvent(type="guard", guard=self.guard, action=self.action,
                               stage=self.stage, reason=self.reason, kinds=list(self.kinds))
