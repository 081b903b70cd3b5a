"""A reply's confidence: the formula, the context that records its tokens, the ``done`` event,
the stored reply, its export and import, and ``assistant ask``; on the fake model, whose
tokens have the log-probabilities a test gives it."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from assistant import confidence as conf
from assistant.cli.chat import _consume
from assistant.config import load_settings
from assistant.eval.metrics import auroc
from assistant.models.backend import ChatMessage, GenerationParams
from assistant.store.exchange import parse
from assistant.testing import FakeBackend, InProcessDaemon, fake_context, in_process_daemon

# Every reply word of the fake is one token: "echo: hi" is two, of 0.9 then 0.4.
LOGPROBS = [math.log(0.9), math.log(0.4)]
GEOMETRIC = math.sqrt(0.9 * 0.4)  # 0.6


def test_the_figure_is_the_chosen_formula_of_the_tokens() -> None:
    assert conf.confidence([]) is None and conf.confidence(None) is None
    assert conf.confidence([0.0, 0.0]) == 1.0
    chosen = conf.FORMULAS[conf.FORMULA](LOGPROBS)
    assert conf.confidence(LOGPROBS) == round(chosen, 4)
    assert conf.FORMULAS["geometric mean"](LOGPROBS) == pytest.approx(GEOMETRIC)
    assert conf.FORMULAS["least probability"](LOGPROBS) == pytest.approx(0.4)
    assert conf.FORMULAS["first token"](LOGPROBS) == pytest.approx(0.9)
    assert conf.confidence(LOGPROBS) == 0.4  # the shipped formula: least of the first three
    assert conf.is_low(conf.LOW - 0.01) and not conf.is_low(conf.LOW) and not conf.is_low(None)
    assert conf.percent(0.999) == "99 %" and conf.percent(None) == "?"


def test_auroc_is_the_chance_a_right_answer_scores_above_a_wrong_one() -> None:
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.1, 0.9], [True, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    with pytest.raises(ValueError):
        auroc([0.5], [True])


@pytest.mark.asyncio
async def test_the_context_keeps_the_tokens_of_its_last_generation() -> None:
    backend = FakeBackend(["one two", "three"], token_logprobs=[-0.1, -0.2])
    ctx = fake_context(backend)
    assert ctx.reply_logprobs is None
    for _ in range(2):
        async for _piece in ctx.generate([ChatMessage("user", "hi")]):
            pass
    assert ctx.reply_logprobs == [-0.1]  # "three": the last generation's one token
    assert backend.params[-1].logprobs and backend.params[-1].top_logprobs == 0


@pytest.mark.asyncio
async def test_a_model_without_logprobs_is_not_asked_for_them() -> None:
    backend = FakeBackend(["one two"])
    ctx = fake_context(backend)
    async for _piece in ctx.generate([ChatMessage("user", "hi")], GenerationParams()):
        pass
    assert not backend.params[-1].logprobs and ctx.reply_logprobs is None


@pytest_asyncio.fixture
async def sure_daemon(isolated_env: dict[str, str], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProcessDaemon]:
    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")
    async with in_process_daemon(load_settings(),
                                 FakeBackend(token_logprobs=LOGPROBS)) as daemon:
        yield daemon


@pytest.mark.asyncio
async def test_done_carries_the_confidence_and_the_stored_reply_and_export_keep_it(
        sure_daemon: InProcessDaemon) -> None:
    events = await sure_daemon.events("/api/turns", {"text": "hi", "skill": "chat"})
    done = events[-1]
    expected = conf.confidence(LOGPROBS)  # 0.4, the least of the first three
    assert expected is not None
    assert done["type"] == "done" and done["confidence"] == expected
    async with sure_daemon.http() as http:
        stored = (await http.get(f"/api/messages/{done['message_id']}")).json()
        exported = (await http.get(
            f"/api/conversations/{done['conversation_id']}/export")).json()
        markdown = (await http.get(f"/api/conversations/{done['conversation_id']}/export",
                                   params={"format": "md"})).text
    assert stored["confidence"] == expected
    reply = exported["conversations"][0]["messages"][-1]
    assert reply["confidence"] == expected and reply["citations"] is None
    assert f"{conf.percent(expected)} sure" in markdown


@pytest.mark.asyncio
async def test_a_reply_without_model_tokens_has_no_figure(fake_daemon: InProcessDaemon) -> None:
    events = await fake_daemon.events("/api/turns", {"text": "hi", "skill": "chat"})
    assert "confidence" in events[-1] and events[-1]["confidence"] is None
    store = fake_daemon.services.store
    assert store is not None and store.message(events[-1]["message_id"]).confidence is None


def _export(confidence: object, citations: object = None) -> str:
    message = {"id": "m1", "parent_id": None, "role": "assistant", "content": "x",
               "status": "complete", "created": "2024-01-01T00:00:00Z",
               "prompt_tokens": 0, "completion_tokens": 0, "confidence": confidence,
               "citations": citations}
    return json.dumps({"format": "assistant-conversations", "version": 1, "conversations": [{
        "id": "c1", "title": "t", "created": "2024-01-01T00:00:00Z",
        "updated": "2024-01-01T00:00:00Z", "archived": False, "pinned": False,
        "messages": [message]}]})


def test_an_import_keeps_confidence_and_citations_and_refuses_odd_ones() -> None:
    cited = [{"number": 1, "source": "a.md, line 2", "support": "It is so.", "span": [0, 9]}]
    [conversation] = parse(_export(0.25, cited))
    assert conversation.messages[0].confidence == 0.25
    assert conversation.messages[0].citations == cited
    with pytest.raises(Exception, match="confidence must be from 0 to 1"):
        parse(_export(1.5))
    with pytest.raises(Exception, match=r"citations\[0\] must be object"):
        parse(_export(None, ["a"]))


def test_ask_reports_the_confidence_and_says_a_low_one_on_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    done = {"type": "done", "status": "complete", "confidence": 0.2}
    result = _consume([{"type": "delta", "text": "maybe"}, done], echo=True)  # type: ignore[list-item]
    out, err = capsys.readouterr()
    assert result["confidence"] == 0.2 and out == "maybe\n"
    assert "low confidence" in err and "20 %" in err
    _consume([{"type": "delta", "text": "sure"}, {**done, "confidence": 0.9}],  # type: ignore[list-item]
             echo=True)
    assert capsys.readouterr().err == ""
