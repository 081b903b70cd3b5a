"""A reply's confidence: one figure in [0, 1] from the log-probabilities of its tokens.

The skill's context keeps the sampled tokens' log-probabilities of the generation a reply is
made of (:attr:`assistant.context.BackendContext.reply_logprobs`); the daemon turns them into
the ``confidence`` of the turn's ``done`` event and of the stored reply. :data:`FORMULAS` are
the candidates :mod:`assistant.eval.confidence` compares on SQuAD (AUROC for telling a right
answer from a wrong one); :data:`FORMULA` is the one chosen there and :data:`LOW` the figure
under which a reply is flagged (docs/confidence.md has the measurements).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

FIRST = 3  # tokens the "first" formulas look at: where a short answer's choice is made


def _geometric_mean(lps: Sequence[float]) -> float:
    return math.exp(sum(lps) / len(lps))


def _mean_probability(lps: Sequence[float]) -> float:
    return sum(math.exp(x) for x in lps) / len(lps)


def _least(lps: Sequence[float]) -> float:
    return math.exp(min(lps))


def _first(lps: Sequence[float]) -> float:
    return _geometric_mean(lps[:FIRST])


def _least_of_first(lps: Sequence[float]) -> float:
    return _least(lps[:FIRST])


def _first_token(lps: Sequence[float]) -> float:
    return math.exp(lps[0])


FORMULAS: dict[str, Callable[[Sequence[float]], float]] = {
    "geometric mean": _geometric_mean,
    "mean probability": _mean_probability,
    "least probability": _least,
    f"geometric mean of first {FIRST}": _first,
    f"least of first {FIRST}": _least_of_first,
    "first token": _first_token,
}
FORMULA = f"least of first {FIRST}"
LOW = 0.3


def confidence(logprobs: Sequence[float] | None) -> float | None:
    """The :data:`FORMULA` of ``logprobs``, rounded to 4 places; None without any."""
    if not logprobs:
        return None
    value = FORMULAS[FORMULA](logprobs)
    return round(min(1.0, max(0.0, value)), 4)


def percent(value: float | None) -> str:
    """"82 %" (rounded down, so that 0.999 is not "100 %"); "?" for None."""
    return "?" if value is None else f"{math.floor(value * 100)} %"


def is_low(value: float | None) -> bool:
    """Whether a reply of confidence ``value`` is flagged (None: no figure, no flag)."""
    return value is not None and value < LOW
