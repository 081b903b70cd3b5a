"""``usage`` of a /v1 reply: prompt tokens read once, every reply's completion tokens, and
``prompt_tokens_details.cached_tokens`` when the model host says how much it reused."""

from __future__ import annotations

from assistant.daemon.openai_stream import Gathered, usage
from assistant.models.backend import Delta


def ended(prompt: int, completion: int, **timings: float) -> Gathered:
    return Gathered(end=Delta("", finish_reason="stop", prompt_tokens=prompt,
                              completion_tokens=completion, timings=timings))


def test_cached_tokens_come_from_the_host_as_a_whole_number() -> None:
    counted = usage([ended(120, 7, cached_tokens=96.0, evaluated_tokens=24.0)])
    assert counted == {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127,
                       "prompt_tokens_details": {"cached_tokens": 96}}
    assert isinstance(counted["prompt_tokens_details"]["cached_tokens"], int)


def test_n_replies_count_the_prompt_once_and_its_cached_part_once() -> None:
    counted = usage([ended(50, 3, cached_tokens=40.0), ended(50, 5, cached_tokens=40.0)])
    assert counted["prompt_tokens"] == 50 and counted["completion_tokens"] == 8
    assert counted["prompt_tokens_details"] == {"cached_tokens": 40}


def test_no_details_when_the_engine_does_not_say() -> None:
    """A remote engine, the fake model or the routed model `assistant`: the field is left out
    rather than reported as 0."""
    assert usage([ended(9, 2)]) == {"prompt_tokens": 9, "completion_tokens": 2,
                                    "total_tokens": 11}
    assert usage([]) == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
