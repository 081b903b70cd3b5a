"""Benchmarks: each measures this project and its baseline in the same run, on the same machine.

A benchmark module is ``benchmarks/bench_<noun>.py`` with a ``run() -> list[Row]`` function;
``python -m benchmarks [NAME…]`` runs them and prints one line per figure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One figure: ours, the baseline's, ours ÷ baseline, and the target it is held to."""

    name: str
    value: float
    baseline: float
    unit: str
    target: str
    ok: bool | None = None

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    def line(self) -> str:
        verdict = "" if self.ok is None else ("  ok" if self.ok else "  MISSED")
        return (f"{self.name:<44} {self.value:>10.3f} {self.unit:<6} baseline "
                f"{self.baseline:>10.3f}  ratio {self.ratio:>7.3f}  target {self.target}{verdict}")
