"""The quality page: each skill, as shipped, beside the bare model asked plainly.

``make quality`` measures every skill on the public sets of ``../shared/eval`` and writes
``docs/quality.md`` from :class:`Comparison` rows: the skill's figure, the same model's asked
plainly (the technique must never subtract) and the default chat model's asked plainly (what a
user gets without the skill), with the commit and the date. For qa, plainly means handed the
question's own passage, which the skill has to find among all of them. The page's ``## ``
sections, measured elsewhere, are kept.
"""

from __future__ import annotations

import datetime
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Comparison:
    skill: str
    dataset: str
    metric: str
    n: int
    model: str  # the model the skill answered with
    skill_score: float
    same_model_plain: float | None
    default_model: str
    default_plain: float | None
    interval: tuple[float, float] | None = None  # paired 95 % bootstrap of skill − same plain
    seconds: tuple[float, ...] = ()  # each run's: the skill's, the same model's, the default's
    note: str = ""


def _figure(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if metric in {"chrF", "BLEU"} else f"{value:.3f}"


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def markdown(rows: list[Comparison], root: Path) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        "# Quality: each skill beside the bare model",
        "",
        f"Written by `make quality` at commit `{_commit(root)}` on {today}. Sets: "
        "`../shared/eval` (text written by other people). Greedy decoding. *Same model plainly*: "
        "the model the skill answered with, given a plain prompt (for qa after the "
        "question's own passage, which the skill has to find: what retrieval at its best "
        "would hand the model); *default plainly*: the "
        "default chat model, given the same. The interval is the paired bootstrap 95 % "
        "interval of skill − same model plainly. *Seconds*: each run's wall time, skill / same "
        "model plainly / default plainly (none when the skill's model is the default); the "
        "skill's run includes loading its model and, for qa, indexing the passages, and the "
        "same model's run finds that model loaded.",
        "",
        "| skill | set | n | metric | skill (model) | same model plainly | default plainly "
        "| skill − same, 95 % | seconds | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        interval = (f"[{r.interval[0]:+.3f}, {r.interval[1]:+.3f}]"
                    if r.interval is not None else "—")
        lines.append(
            f"| {r.skill} | {r.dataset} | {r.n} | {r.metric} | "
            f"**{_figure(r.skill_score, r.metric)}** ({r.model}) | "
            f"{_figure(r.same_model_plain, r.metric)} | "
            f"{_figure(r.default_plain, r.metric)} ({r.default_model}) | {interval} | "
            f"{' / '.join(f'{t:.0f}' for t in r.seconds) or '—'} | {r.note} |")
    return "\n".join(lines) + "\n"


def kept(page: str) -> str:
    """What a rewrite keeps of ``page``: its sections from the first ``## `` heading on (such
    as *Tool use*, which ``python -m benchmarks tool_use`` measures), after a blank line."""
    heading = re.search(r"^## ", page, re.MULTILINE)
    return "\n" + page[heading.start():] if heading else ""


def write(rows: list[Comparison], path: Path) -> None:
    """Write the page atomically (a run that dies leaves the previous page whole), keeping the
    sections this report does not write."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(markdown(rows, path.parent) + kept(old), encoding="utf-8")
    tmp.replace(path)
