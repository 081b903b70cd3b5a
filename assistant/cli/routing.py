"""`assistant routing …` commands: explain a decision, evaluate on a labelled set, correct.

These run the router in-process with the MiniLM embedder (no daemon needed).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from assistant.cli import AppContext, pass_app
from assistant.errors import RequestError

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.routing import Router

CORRECTIONS_FILE = "routing-corrections.json"


def register(main: click.Group) -> None:
    main.add_command(routing_group)


def build_router(settings: Settings) -> Router:
    """The router over the loaded plugins' skills, embedding with MiniLM in-process."""
    from assistant.embedding import MiniLMEmbedder
    from assistant.locations import data_dir, models_dir
    from assistant.plugins import load_plugins
    from assistant.routing import Router

    embedder = MiniLMEmbedder(models_dir(settings, create=False))

    async def embed(texts: list[str]) -> list[list[float]]:
        return await embedder.embed(embedder.name, texts)

    skills = load_plugins(settings).available_skills()
    return Router(skills, embed, corrections_path=data_dir(settings) / CORRECTIONS_FILE)


@click.group("routing")
def routing_group() -> None:
    """Which skill takes a turn, and why."""


@routing_group.command("explain")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="The decision as one JSON object.")
@pass_app
def explain(app: AppContext, text: str, as_json: bool) -> None:
    """Show where TEXT would be routed, without running the skill."""
    decision = asyncio.run(build_router(app.settings).route(text))
    if as_json:
        click.echo(json.dumps(decision.to_dict(), ensure_ascii=False, indent=2))
        return
    click.echo(f"skill:     {decision.skill} ({decision.method}, score {decision.score:.3f})")
    if decision.runner_up:
        click.echo(f"runner-up: {decision.runner_up} (score {decision.runner_up_score:.3f})")
    click.echo(f"why:       {decision.explanation}")


def _read_items(path: Path) -> list[dict[str, str]]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            items.append({"text": str(item["text"]), "skill": str(item["skill"])})
        except (ValueError, KeyError, TypeError):
            raise RequestError(f"{path}:{number}: expected a JSON object with "
                               '"text" and "skill"') from None
    return items


async def evaluate(router: Router, items: list[dict[str, str]]) -> dict[str, Any]:
    """Route every item: accuracy, confusion counts and the misrouted items."""
    confusion: Counter[tuple[str, str]] = Counter()
    errors = []
    for item in items:
        decision = await router.route(item["text"])
        confusion[(item["skill"], decision.skill)] += 1
        if decision.skill != item["skill"]:
            errors.append({**item, "routed": decision.skill, "method": decision.method,
                           "score": decision.score})
    n = len(items)
    return {"accuracy": (n - len(errors)) / n if n else 0.0, "n": n, "errors": errors,
            "confusion": {f"{e}->{g}": c for (e, g), c in sorted(confusion.items())}}


@routing_group.command("eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help='One object {"accuracy", "n", "errors"}.')
@pass_app
def eval_command(app: AppContext, file: Path, as_json: bool) -> None:
    """Route each JSONL line {"text", "skill"} of FILE; print accuracy and the misrouted lines."""
    result = asyncio.run(evaluate(build_router(app.settings), _read_items(file)))
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    click.echo(f"accuracy {result['accuracy']:.1%} over {result['n']} utterances\n")
    labels = sorted({k.split("->")[i] for k in result["confusion"] for i in (0, 1)})
    width = max(len(label) for label in labels) + 2
    click.echo("expected \\ routed".ljust(20) + "".join(x.rjust(width) for x in labels))
    for expected in labels:
        row = [result["confusion"].get(f"{expected}->{got}", 0) for got in labels]
        click.echo(expected.ljust(20) + "".join(str(c).rjust(width) for c in row))
    if result["errors"]:
        click.echo("\nmisrouted:")
        for err in result["errors"]:
            click.echo(f"  {err['skill']} → {err['routed']} ({err['method']}, "
                       f"{err['score']:.2f}): {err['text']}")


@routing_group.command("correct")
@click.argument("text")
@click.argument("skill")
@pass_app
def correct(app: AppContext, text: str, skill: str) -> None:
    """Route TEXT to SKILL from now on; it becomes a local example for similar utterances."""
    router = build_router(app.settings)
    router.correct(text, skill)
    click.echo(f"'{text}' now goes to {skill} (saved to {router.corrections_path}).")
