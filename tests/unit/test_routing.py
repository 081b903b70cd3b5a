"""The router: explicit commands, corrections, and accuracy on the labelled set (real MiniLM)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from assistant.cli.routing import evaluate
from assistant.embedding import MODEL_FILE, TOKENIZER_FILE, MiniLMEmbedder
from assistant.plugins import PluginHost
from assistant.routing import Router, request_part
from assistant.testing import hashed_vector

DATA = Path(__file__).resolve().parent.parent / "data" / "routing.jsonl"


async def fake_embed(texts: list[str]) -> list[list[float]]:
    return [hashed_vector(t) for t in texts]


def bundled_skills() -> dict:  # type: ignore[type-arg]
    host = PluginHost()
    host.load_entry_points()
    return host.available_skills()


def test_explicit_commands_win() -> None:
    router = Router(bundled_skills(), fake_embed)
    d = asyncio.run(router.route("/translate de good morning"))
    assert (d.method, d.skill, d.text) == ("explicit", "translate", "de good morning")
    assert asyncio.run(router.route("@qa where is the invoice?")).skill == "qa"
    assert asyncio.run(router.route("/nosuchskill hello")).method != "explicit"


def test_decision_explains_itself() -> None:
    d = asyncio.run(Router(bundled_skills(), fake_embed).route("please translate this to French"))
    assert d.method in {"semantic", "fallback"} and d.runner_up and d.explanation
    assert set(d.to_dict()) >= {"method", "skill", "score", "runner_up", "runner_up_score"}


def test_long_body_is_routed_on_its_instruction() -> None:
    assert request_part("Summarize: " + "word " * 40) == "Summarize"
    assert request_part("Why is the sky blue?") == "Why is the sky blue?"


def test_correction_persists_and_changes_routing(tmp_path: Path) -> None:
    path = tmp_path / "corrections.json"
    router = Router(bundled_skills(), fake_embed, corrections_path=path)
    text = "zork the frobnicator"
    router.correct(text, "summarize")
    again = Router(bundled_skills(), fake_embed, corrections_path=path)
    d = asyncio.run(again.route("Zork  the frobnicator"))
    assert (d.method, d.skill) == ("correction", "summarize")
    # The stored utterance is an example too: a near paraphrase follows it.
    assert asyncio.run(again.route("zork the frobnicator please")).skill == "summarize"
    assert json.loads(path.read_text())["examples"][0]["skill"] == "summarize"


def _models_dir() -> Path:
    # Read by tests/conftest.py at import: its fixture has removed ASSISTANT_* by now.
    from tests.conftest import TEST_MODELS_DIR

    return TEST_MODELS_DIR


def test_routing_accuracy_on_labelled_set() -> None:
    missing = [f for f in (MODEL_FILE, TOKENIZER_FILE) if not (_models_dir() / f).exists()]
    assert not missing, f"minilm-l6 is not in {_models_dir()}: run `make test-models`"
    items = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert len(items) >= 300
    assert {i["skill"] for i in items} == {"chat", "translate", "summarize", "qa"}
    embedder = MiniLMEmbedder(_models_dir())

    async def embed(texts: list[str]) -> list[list[float]]:
        return await embedder.embed(embedder.name, texts)

    result = asyncio.run(evaluate(Router(bundled_skills(), embed), items))
    print(f"routing accuracy {result['accuracy']:.3f} over {result['n']}")
    assert result["accuracy"] >= 0.95, result["errors"]
