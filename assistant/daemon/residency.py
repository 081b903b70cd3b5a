"""The models resident in the model host, and which of them give way to a model being loaded.

Each counts what it will take (:mod:`assistant.models.footprint`) against
``models.memory_budget_mb``. When a load would pass the budget, the least recently used idle
model is unloaded, then the next, until it fits. A pinned model (``keep_alive`` -1: loaded
with ``keep_alive=-1``, or named in ``models.pinned``) never gives way: neither idle time nor
the budget unloads it, only an unload asked for. A model that cannot fit beside the pinned
ones is refused (:class:`~assistant.errors.MemoryBudgetFull`), since no eviction could make
room; when only busy models are left to evict, the load goes ahead over the budget rather
than fail a request, as it does for a model bigger than the whole budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from assistant.errors import MemoryBudgetFull
from assistant.models.footprint import Footprint

MIB = 1 << 20


@dataclass
class Resident:
    name: str
    kind: str
    memory: Footprint  # what the memory budget counts for it
    generation: int
    info: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    in_use: int = 0
    keep_alive: int = 1800  # seconds it stays once idle; -1: pinned

    @property
    def pinned(self) -> bool:
        return self.keep_alive < 0


def next_victim(residents: Iterable[Resident], size: int, keep: str,
                budget: int) -> Resident | None:
    """The model to unload so that ``keep``, taking ``size`` bytes, fits in ``budget``: the
    least recently used idle one that is not pinned. None when it fits already, or when only
    busy models could make room. MemoryBudgetFull when the pinned models alone leave no room
    for a model that fits the budget."""
    others = [r for r in residents if r.name != keep]
    if sum(r.memory.total_bytes for r in others) + size <= budget:
        return None
    pinned = [r for r in others if r.pinned]
    held = sum(r.memory.total_bytes for r in pinned)
    if pinned and held + size > budget >= size:
        names = ", ".join(sorted(r.name for r in pinned))
        raise MemoryBudgetFull(
            f"model {keep!r} needs {size / MIB:.0f} MiB, and the pinned models ({names}) hold "
            f"{held / MIB:.0f} of the {budget / MIB:.0f} MiB of models.memory_budget_mb; a "
            "pinned model is never evicted",
            "Unload one (`assistant models unload NAME`), load it again with a keep_alive other "
            "than -1, or raise models.memory_budget_mb.")
    idle = [r for r in others if r.in_use == 0 and not r.pinned]
    return min(idle, key=lambda r: r.last_used) if idle else None
