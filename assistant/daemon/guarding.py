"""The plugins' guards around one turn: the check of its text, the filter of its reply.

:class:`GuardChain` runs every registered :class:`~assistant.guards.Guard` in registration
order (bundled plugins first), each call timed and isolated by
:meth:`~assistant.plugins.PluginHost.timed`. A guard that raises or runs late is left out of
the rest of the turn with a ``guard`` decision of action ``error``: the turn goes on, and the
text it was given goes on as it was (fail open, said out loud). A guard whose breaker is open
is not called; ``assistant plugins list`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assistant.guards import Filtered, Guard, GuardDecision, Verdict
from assistant.skills import Turn

if TYPE_CHECKING:
    from assistant.plugins import PluginHost


@dataclass
class Checked:
    """The user's text after every guard's check, and what they decided."""

    text: str
    decisions: list[GuardDecision] = field(default_factory=list)
    blocked: GuardDecision | None = None


@dataclass(frozen=True)
class _Entry:
    name: str
    plugin: str
    guard: Guard

    @property
    def hook(self) -> str:
        return f"guard {self.name}"


class GuardChain:
    """Every guard of the plugins, asked in turn."""

    def __init__(self, plugins: PluginHost) -> None:
        self.plugins = plugins

    def _entries(self, method: str) -> list[_Entry]:
        """The guards that override ``method``, are enabled and whose breaker allows them."""
        out = []
        for name, guard in self.plugins.guards.items():
            plugin = self.plugins.guard_plugin[name]
            overrides = getattr(type(guard), method) is not getattr(Guard, method)
            if overrides and guard.enabled and self.plugins.active(plugin, f"guard {name}"):
                out.append(_Entry(name, plugin, guard))
        return out

    async def check(self, text: str, conversation_id: str | None = None,
                    skill: str | None = None) -> Checked:
        """``text`` through every guard's ``check``: rewritten, or blocked at the first block."""
        checked = Checked(text)
        for entry in self._entries("check"):
            turn = Turn(checked.text, conversation_id=conversation_id, skill=skill)
            verdict, failed = await self.plugins.timed(entry.plugin, entry.hook,
                                                       entry.guard.check, turn=turn)
            if failed is None and verdict is not None and not _valid_verdict(verdict):
                failed = self.plugins.misbehaved(
                    entry.plugin, entry.hook, f"check returned {verdict!r}, not a Verdict "
                    "with text for a rewrite")
            if failed is not None:
                checked.decisions.append(GuardDecision(entry.name, "error", "input", failed))
                continue
            if verdict is None:
                continue
            decision = GuardDecision(entry.name, verdict.action, "input", verdict.reason,
                                     verdict.kinds)
            checked.decisions.append(decision)
            if verdict.action == "block":
                checked.blocked = decision
                break
            checked.text = str(verdict.text)
        return checked

    def output(self, turn: Turn) -> OutputFilter:
        """The filter of ``turn``'s reply."""
        return OutputFilter(self.plugins, self._entries("filter"), turn)


def _valid_verdict(verdict: object) -> bool:
    return isinstance(verdict, Verdict) and (verdict.action == "block" or (
        verdict.action == "rewrite" and isinstance(verdict.text, str)))


class OutputFilter:
    """One reply's text on its way through the guards' filters.

    Each guard keeps back what it asked to hold (``pending``, per guard); text reaches the
    client and the store only once the last guard released it. ``stopped`` is the decision
    of the guard that ended the reply, once one has.
    """

    def __init__(self, plugins: PluginHost, entries: list[_Entry], turn: Turn) -> None:
        self.plugins = plugins
        self.entries = entries
        self.turn = turn
        self.pending = ["" for _ in entries]
        self.stopped: GuardDecision | None = None

    async def feed(self, text: str, final: bool = False) -> tuple[str, list[GuardDecision]]:
        """What of the reply, ``text`` added, every guard has released now, and what they
        decided. ``final``: the reply has ended; everything held is released (or cut)."""
        decisions: list[GuardDecision] = []
        piece = text
        for i, entry in enumerate(self.entries):
            if self.stopped is not None:
                break
            pending = self.pending[i] + piece
            if not pending:
                piece = ""
                continue
            result, failed = await self.plugins.timed(
                entry.plugin, entry.hook, entry.guard.filter, turn=self.turn,
                pending=pending, final=final)
            if failed is None and result is not None:
                failed = self._check(entry, result, pending, final)
            if failed is not None:  # left out from here on; what it was given goes on
                decisions.append(GuardDecision(entry.name, "error", "output", failed))
                self.entries = [e for e in self.entries if e is not entry]
                self.pending.pop(i)
                return await self._after_failure(i, pending, final, decisions)
            if result is None:
                self.pending[i], piece = "", pending
                continue
            self.pending[i] = pending[len(pending) - result.held:] if result.held else ""
            piece = result.text
            if result.reason or result.kinds:
                decisions.append(GuardDecision(entry.name, "redact", "output",
                                               result.reason, result.kinds))
            if result.stop is not None:
                self.stopped = GuardDecision(entry.name, "stop", "output", result.stop,
                                             result.kinds)
                decisions.append(self.stopped)
                final = True  # the guards after it release what they hold, filtered
        return piece, decisions

    async def _after_failure(self, at: int, pending: str, final: bool,
                             decisions: list[GuardDecision]) -> tuple[str, list[GuardDecision]]:
        """Go on after the guard at ``at`` failed: the guards after it get ``pending``."""
        later = OutputFilter(self.plugins, self.entries[at:], self.turn)
        later.pending = self.pending[at:]
        piece, more = await later.feed(pending, final)
        self.pending[at:] = later.pending
        self.entries[at:] = later.entries
        self.stopped = later.stopped
        return piece, decisions + more

    def _check(self, entry: _Entry, result: object, pending: str, final: bool) -> str | None:
        """The notice for a filter's answer that cannot be used, counted as its failure."""
        if not isinstance(result, Filtered) or not isinstance(result.text, str):
            why = f"filter returned {result!r}, not Filtered"
        elif not 0 <= result.held <= len(pending):
            why = f"filter held {result.held} of {len(pending)} characters"
        elif final and result.held:
            why = "filter held text back after the reply ended"
        else:
            return None
        return self.plugins.misbehaved(entry.plugin, entry.hook, why)
