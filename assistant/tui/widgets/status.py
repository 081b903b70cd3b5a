"""The status bar: state, model, the last turn's skill and route, speed, context used."""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual.widgets import Static

from assistant.tui.api import StoredMessage, context_size
from assistant.wire import Progress, Route, TokenUsage, TurnDone


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
    answered_by: str = ""  # the model the last reply came from (a skill may use its own)


def event_number(value: object) -> float | None:
    """A number of a dict an event carries (whose items the client does not check), or None:
    a malformed value must not break the status bar."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


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

    def show_progress(self, event: Progress) -> None:
        """A ``progress`` event: its message, and how far along when it has a total."""
        amount = f" {event['done']}/{event['total']}" if event["total"] else ""
        self.set(state=f"{event['message']}{amount}")

    def show_route(self, event: Route) -> None:
        """A turn's ``route`` event: the skill, how it was chosen, the score."""
        score = event.get("score")
        self.set(skill=event["skill"], method=event.get("method", ""),
                 score=None if score is None else float(score), answered_by="")

    def show_done(self, event: TurnDone) -> None:
        """A turn's ``done`` event: decode speed, context used, and the daemon's context."""
        usage = event.get("usage") or TokenUsage(prompt_tokens=0, completion_tokens=0)
        self.set(tokens_per_s=event_number(event.get("timings", {}).get("tokens_per_s")),
                 context_used=usage["prompt_tokens"] + usage["completion_tokens"],
                 context_size=context_size(event.get("context")),
                 answered_by=event.get("model", ""))

    def show_reply(self, reply: StoredMessage | None) -> None:
        """The route, speed and context of a stored reply (the last of a conversation opened);
        none for a conversation without one."""
        if reply is None:
            self.set(skill="", method="", score=None, tokens_per_s=None, context_used=0,
                     answered_by="")
            return
        route = reply.route or {}
        self.set(skill=reply.skill or "", method=str(route.get("method", "")),
                 score=route.get("score"), tokens_per_s=reply.timings.get("tokens_per_s"),
                 context_used=reply.prompt_tokens + reply.completion_tokens,
                 answered_by=reply.model or "")

    def render_status(self) -> str:
        s = self.status
        parts = [s.state]
        if s.model:
            parts.append(s.model)
        if s.skill:
            route = f"{s.skill} ({s.method}"
            route += f" {s.score:.2f})" if s.score is not None else ")"
            if s.answered_by and s.answered_by != s.model:
                route += f" by {s.answered_by}"  # the skill's own model answered
            parts.append(route)
        if s.tokens_per_s is not None:
            parts.append(f"{s.tokens_per_s:.1f} tok/s")
        if s.context_size:
            parts.append(f"ctx {s.context_used}/{s.context_size}")
        elif s.context_used:
            parts.append(f"ctx {s.context_used}")
        return " │ ".join(parts)
