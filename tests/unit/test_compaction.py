"""Context compaction: counted before generating, older turns folded into a stored summary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from assistant.config import load_settings
from assistant.daemon.compaction import (
    SUMMARY_PREFIX,
    CompactionFailed,
    Compactor,
    chat_messages,
    reply_reserve,
)
from assistant.store import Store
from assistant.store.records import Message, model_context
from assistant.testing import FAKE_MODEL, FakeBackend

N_CTX = 2048


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open(load_settings())
    yield s
    s.close()


def _conversation(store: Store, turns: int, size: int) -> list[Message]:
    """``turns`` finished turns and a new question; the path root → that question."""
    cid = None
    for i in range(turns):
        turn = store.begin_turn(cid, f"question {i}: " + "why " * size)
        cid = turn.conversation_id
        store.finalize(turn.assistant_message.id, status="complete",
                       content=f"answer {i}: " + "because " * size)
    last = store.begin_turn(cid, "and the last question?")
    return store.history(last.user_message.id)


def _compactor(store: Store, backend: FakeBackend) -> Compactor:
    async def add_summary(before: str, text: str, tokens: int, seconds: float) -> Message:
        return store.add_summary(before, text, model=FAKE_MODEL, completion_tokens=tokens)

    return Compactor(backend, FAKE_MODEL, N_CTX, add_summary=add_summary)


async def _no_progress(done: int, total: int, message: str) -> None:
    pass


@pytest.mark.asyncio
async def test_a_conversation_that_fits_is_left_alone(store: Store) -> None:
    backend = FakeBackend()
    path = _conversation(store, 3, 20)
    assert await _compactor(store, backend).fit(path, max_tokens=None,
                                                progress=_no_progress) is None
    assert backend.calls == []


@pytest.mark.asyncio
async def test_older_turns_become_a_summary_and_the_recent_ones_stay(store: Store) -> None:
    backend = FakeBackend(replies=["They asked why, many times."] * 4)
    path = _conversation(store, 16, 30)  # ~ 16 x 103 tokens: past 2048 - 512
    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int, message: str) -> None:
        seen.append((done, total))

    result = await _compactor(store, backend).fit(path, max_tokens=None, progress=progress)
    assert result is not None
    assert result.summary.content == "They asked why, many times."
    assert result.tokens_before + reply_reserve(N_CTX, None) > N_CTX
    assert result.tokens_after + reply_reserve(N_CTX, None) <= N_CTX
    parts = len(backend.calls)
    assert seen[0] == (0, parts) and seen[-1] == (parts, parts)

    stored = store.history(path[-1].id)
    context = model_context(stored)
    assert context[0].id == result.summary.id and context[1].role == "user"
    assert context[-1].id == path[-1].id
    assert result.covers == len(stored) - len(context)
    # the model was asked about the covered turns, and is given the summary as a system note
    asked = backend.calls[0][-1].content
    assert "question 0" in asked and context[1].content.split(":")[0] not in asked
    assert chat_messages(context)[0].content == SUMMARY_PREFIX + result.summary.content
    # nothing is lost: every message is still stored
    assert len(stored) == len(path) + 1


@pytest.mark.asyncio
async def test_a_history_longer_than_the_context_is_summarized_in_parts(store: Store) -> None:
    backend = FakeBackend(replies=["part one.", "parts one and two.", "all parts."])
    path = _conversation(store, 30, 60)  # ~ 3,900 tokens: longer than the whole context
    result = await _compactor(store, backend).fit(path, max_tokens=100, progress=_no_progress)
    assert result is not None and len(backend.calls) >= 2
    assert "Summary so far:\npart one." in backend.calls[1][-1].content
    assert all(sum(len(m.content) // 4 + 4 for m in call) < N_CTX for call in backend.calls)
    assert result.tokens_after + 100 <= N_CTX


@pytest.mark.asyncio
async def test_an_undone_summary_brings_the_turns_back_and_a_new_one_can_follow(
    store: Store,
) -> None:
    backend = FakeBackend(replies=["first summary"] * 4)
    path = _conversation(store, 16, 30)
    first = await _compactor(store, backend).fit(path, max_tokens=None, progress=_no_progress)
    assert first is not None
    backend.replies = ["second summary"] * 4
    store.set_summary_undone(first.summary.id)
    path = store.history(path[-1].id)
    assert all(m.role != "summary" for m in model_context(path))
    second = await _compactor(store, backend).fit(path, max_tokens=None,
                                                  progress=_no_progress)
    assert second is not None and second.summary.content == "second summary"
    assert model_context(store.history(path[-1].id))[0].id == second.summary.id


@pytest.mark.asyncio
async def test_a_single_message_too_long_for_the_context_is_not_compacted(store: Store) -> None:
    turn = store.begin_turn(None, "word " * 9000)
    path = store.history(turn.user_message.id)
    assert await _compactor(store, FakeBackend()).fit(
        path, max_tokens=None, progress=_no_progress) is None


@pytest.mark.asyncio
async def test_a_long_new_message_after_some_history_folds_nothing_away(store: Store) -> None:
    cid = _conversation(store, 3, 20)[0].conversation_id
    turn = store.begin_turn(cid, "word " * 9000)
    path = store.history(turn.user_message.id)
    backend = FakeBackend()
    assert await _compactor(store, backend).fit(path, max_tokens=None,
                                                progress=_no_progress) is None
    assert backend.calls == [] and all(m.role != "summary" for m in store.history(path[-1].id))


@pytest.mark.asyncio
async def test_a_large_reply_reserve_still_keeps_the_last_exchange(store: Store) -> None:
    backend = FakeBackend(replies=["summary"] * 6)
    path = _conversation(store, 16, 30)
    result = await _compactor(store, backend).fit(path, max_tokens=1024, progress=_no_progress)
    assert result is not None
    kept = model_context(store.history(path[-1].id))[1:]
    assert [m.role for m in kept][-3:] == ["user", "assistant", "user"]


@pytest.mark.asyncio
async def test_an_empty_summary_stores_nothing(store: Store) -> None:
    path = _conversation(store, 16, 30)
    with pytest.raises(CompactionFailed):
        await _compactor(store, FakeBackend(replies=[" "] * 6)).fit(
            path, max_tokens=None, progress=_no_progress)
    assert all(m.role != "summary" for m in store.history(path[-1].id))


@pytest.mark.asyncio
async def test_one_message_longer_than_a_part_is_cut_until_it_fits(store: Store) -> None:
    backend = FakeBackend(replies=["s"] * 40)
    turn = store.begin_turn(None, "tell me " * 1500)  # ~3,000 tokens: longer than the context
    store.finalize(turn.assistant_message.id, status="complete", content="ok")
    last = store.begin_turn(turn.conversation_id, "and then?")
    path = store.history(last.user_message.id)
    result = await _compactor(store, backend).fit(path, max_tokens=None, progress=_no_progress)
    assert result is not None and len(backend.calls) >= 3
    assert all(sum(len(m.content) // 4 + 4 for m in call) < N_CTX for call in backend.calls)
