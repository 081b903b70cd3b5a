"""Why the last turn went to its skill; pick another skill to re-route it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option


def describe_route(route: Mapping[str, Any]) -> str:
    lines = [
        f"skill        {route.get('skill', '?')}",
        f"method       {route.get('method', '?')}",
        f"score        {float(route.get('score') or 0):.3f}",
    ]
    if route.get("runner_up"):
        lines.append(f"runner-up    {route['runner_up']} "
                     f"({float(route.get('runner_up_score') or 0):.3f})")
    lines.append(f"why          {route.get('explanation', '')}")
    scores = route.get("scores") or {}
    if scores:
        lines.append("")
        lines.append("scores")
        for name, score in sorted(scores.items(), key=lambda kv: -float(kv[1])):
            bar = "█" * max(0, round(float(score) * 20))
            lines.append(f"  {name:<12} {float(score):6.3f} {bar}")
    return "\n".join(lines)


class RouteScreen(ModalScreen[str | None]):
    """Dismissed with the skill to re-route the turn to, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, route: Mapping[str, Any], skills: list[str]) -> None:
        super().__init__(classes="dialog")
        self.route = route
        self.skills = skills

    def compose(self) -> ComposeResult:
        with Vertical(classes="box wide"):
            yield Label("Route of the last turn  (Enter re-routes · Esc closes)",
                        classes="title")
            yield Static(describe_route(self.route), markup=False, id="explanation")
            yield Label("Re-route to:")
            yield OptionList(*[Option(s, id=s) for s in self.skills
                               if s != self.route.get("skill")], id="skills")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_close(self) -> None:
        self.dismiss(None)
