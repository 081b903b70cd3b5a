"""The status bar says which model answered when a skill's own model did."""

from __future__ import annotations

from assistant import wire
from assistant.tui.widgets.status import StatusBar


def route(skill: str, method: str, score: float) -> wire.Route:
    return wire.Route(type="route", method=method, skill=skill, score=score, runner_up=None,
                      runner_up_score=0.0, explanation="", text="", scores={})


def done(model: str, prompt_tokens: int = 0, completion_tokens: int = 0,
         context: int | None = None, timings: dict[str, float] | None = None) -> wire.TurnDone:
    return wire.TurnDone(type="done", status="complete", model=model, skill="chat",
                         usage=wire.TokenUsage(prompt_tokens=prompt_tokens,
                                               completion_tokens=completion_tokens),
                         context=context, timings=timings or {})


def test_the_model_that_answered_is_shown_when_it_is_not_the_chat_model() -> None:
    bar = StatusBar()
    bar.set(model="qwen2.5-coder-0.5b", state="ready")
    bar.show_route(route("summarize", "semantic", 0.71))
    bar.show_done(done("qwen2.5-coder-1.5b", 90, 10, 32768, {"tokens_per_s": 31.0}))
    line = bar.render_status()
    assert "summarize (semantic 0.71) by qwen2.5-coder-1.5b" in line
    assert "ctx 100/32768" in line
    # The chat model itself answering needs no word; a new turn's route clears it.
    bar.show_done(done("qwen2.5-coder-0.5b"))
    assert " by " not in bar.render_status()
    bar.show_done(done("qwen2.5-coder-1.5b"))
    bar.show_route(route("chat", "fallback", 0.0))
    assert " by " not in bar.render_status()


def test_a_timing_that_is_no_number_shows_no_speed() -> None:
    bar = StatusBar()
    bar.show_done(done("m", 3, 4, timings={"tokens_per_s": "fast"}))  # type: ignore[dict-item]
    assert (bar.status.tokens_per_s, bar.status.context_used) == (None, 7)
