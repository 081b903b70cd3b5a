"""The status bar says which model answered when a skill's own model did."""

from __future__ import annotations

from assistant.tui.widgets.status import StatusBar


def test_the_model_that_answered_is_shown_when_it_is_not_the_chat_model() -> None:
    bar = StatusBar()
    bar.set(model="qwen2.5-coder-0.5b", state="ready")
    bar.show_route({"skill": "summarize", "method": "semantic", "score": 0.71})
    bar.show_done({"model": "qwen2.5-coder-1.5b", "usage": {"prompt_tokens": 90,
                                                              "completion_tokens": 10},
                   "timings": {"tokens_per_s": 31.0}, "context": 32768})
    line = bar.render_status()
    assert "summarize (semantic 0.71) by qwen2.5-coder-1.5b" in line
    assert "ctx 100/32768" in line
    # The chat model itself answering needs no word; a new turn's route clears it.
    bar.show_done({"model": "qwen2.5-coder-0.5b"})
    assert " by " not in bar.render_status()
    bar.show_done({"model": "qwen2.5-coder-1.5b"})
    bar.show_route({"skill": "chat", "method": "fallback", "score": 0.0})
    assert " by " not in bar.render_status()
