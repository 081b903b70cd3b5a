"""The status bar: state, model, the last turn's skill and route, speed, context used."""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual.widgets import Static


@dataclass(frozen=True)
class Status:
    state: str = "starting daemon…"
    model: str = ""
    skill: str = ""
    method: str = ""
    score: float | None = None
    tokens_per_s: float | None = None
    context_used: int = 0
    context_size: int | None = None  # the daemon's figure; None when it cannot tell


class StatusBar(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.status = Status()
        self.update(self.render_status())

    def set(self, **changes: object) -> None:
        status = replace(self.status, **changes)  # type: ignore[arg-type]
        if status == self.status:
            return
        self.status = status
        # One line whatever it says: a repaint, never a layout of the whole screen.
        self.update(self.render_status(), layout=False)

    def render_status(self) -> str:
        s = self.status
        parts = [s.state]
        if s.model:
            parts.append(s.model)
        if s.skill:
            route = f"{s.skill} ({s.method}"
            route += f" {s.score:.2f})" if s.score is not None else ")"
            parts.append(route)
        if s.tokens_per_s is not None:
            parts.append(f"{s.tokens_per_s:.1f} tok/s")
        if s.context_size:
            parts.append(f"ctx {s.context_used}/{s.context_size}")
        elif s.context_used:
            parts.append(f"ctx {s.context_used}")
        return " │ ".join(parts)
