"""The history API router on a bare FastAPI app, given a real store (and model manager)
through its dependencies."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from assistant.config import load_settings
from assistant.daemon import deps
from assistant.daemon.api import install_error_handlers
from assistant.daemon.history_api import router
from assistant.daemon.model_manager import ModelManager
from assistant.daemon.search_gate import SearchGate
from assistant.store import Store
from tests.databases import Database


@pytest.fixture
def store(database: Database) -> Iterator[Store]:
    s = Store.open(load_settings())
    yield s
    s.close()


@pytest.fixture
def client(store: Store) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.dependency_overrides[deps.store] = lambda: store
    app.dependency_overrides[deps.settings] = load_settings
    app.dependency_overrides[deps.models] = lambda: ModelManager(load_settings())
    gate = SearchGate(load_settings().search)
    app.dependency_overrides[deps.search_gate] = lambda: gate
    app.include_router(router)
    return TestClient(app)


def _turn(store: Store, text: str, answer: str, skill: str = "chat") -> Any:
    turn = store.begin_turn(None, text)
    store.finalize(turn.assistant_message.id, status="complete", content=answer, skill=skill)
    return turn


def test_list_get_patch_delete(client: TestClient, store: Store) -> None:
    turn = _turn(store, "first question", "first answer")
    other = _turn(store, "translate cat", "chat", skill="translate")
    listed = client.get("/api/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [other.conversation_id, turn.conversation_id]
    assert client.get("/api/conversations", params={"skill": "translate"}).json()[
        "conversations"][0]["id"] == other.conversation_id

    body = client.get(f"/api/conversations/{turn.conversation_id}").json()
    assert body["active_path"] == [turn.user_message.id, turn.assistant_message.id]
    assert body["messages"][1]["parent_id"] == turn.user_message.id

    regen = store.regenerate(turn.assistant_message.id)
    patched = client.patch(f"/api/conversations/{turn.conversation_id}", json={
        "title": "Renamed", "pinned": True, "active_message_id": turn.assistant_message.id,
    })
    assert patched.status_code == 200
    assert patched.json()["title"] == "Renamed" and patched.json()["pinned"] is True
    assert patched.json()["active_path"][-1] == turn.assistant_message.id
    assert regen.assistant_message.id in {m["id"] for m in patched.json()["messages"]}

    assert client.patch(f"/api/conversations/{turn.conversation_id}",
                        json={"archived": True}).json()["archived"] is True
    assert client.get("/api/conversations", params={"archived": "true"}).json()[
        "conversations"][0]["id"] == turn.conversation_id

    assert client.delete(f"/api/conversations/{turn.conversation_id}").status_code == 204
    missing = client.get(f"/api/conversations/{turn.conversation_id}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_search_export_import(client: TestClient, store: Store) -> None:
    turn = _turn(store, "where do pelicans live", "pelicans live near water")
    hits = client.get("/api/search", params={"q": "pelicans"}).json()["hits"]
    assert len(hits) == 2 and "<mark>pelicans</mark>" in hits[0]["snippet"]
    assert client.get("/api/search", params={"q": "pelicans", "skill": "qa"}).json() == {
        "hits": []}

    exported = client.get(f"/api/conversations/{turn.conversation_id}/export")
    assert exported.headers["content-type"].startswith("application/json")
    md = client.get(f"/api/conversations/{turn.conversation_id}/export",
                    params={"format": "md"})
    assert md.text.startswith("# where do pelicans live")

    client.delete(f"/api/conversations/{turn.conversation_id}")
    imported = client.post("/api/import", content=exported.content)
    assert imported.json() == {"imported": [turn.conversation_id], "skipped": []}
    assert client.get(f"/api/conversations/{turn.conversation_id}/export").json()[
        "conversations"] == exported.json()["conversations"]

    bad = client.post("/api/import", content=b'{"format": "assistant-conversations",')
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_import"
    assert "line 1" in bad.json()["error"]["message"]


def test_search_finds_chinese_words_inside_longer_runs(client: TestClient,
                                                      store: Store) -> None:
    turn = _turn(store, "大语言模型的评估指标有哪些", "常用的指标有困惑度和BLEU。", skill="qa")
    hits = client.get("/api/search", params={"q": "指标"}).json()["hits"]
    assert {h["message_id"] for h in hits} == {turn.user_message.id, turn.assistant_message.id}
    assert "大语言模型的评估<mark>指标</mark>有哪些" in {h["snippet"] for h in hits}
    exported = client.get(f"/api/conversations/{turn.conversation_id}/export").content
    client.delete(f"/api/conversations/{turn.conversation_id}")
    assert client.get("/api/search", params={"q": "模型"}).json() == {"hits": []}
    client.post("/api/import", content=exported)  # imported messages are indexed too
    hits = client.get("/api/search", params={"q": "评估指标", "skill": "qa"}).json()["hits"]
    assert [h["snippet"] for h in hits] == ["大语言模型的<mark>评估指标</mark>有哪些"]


def test_storage_unavailable_is_503(client: TestClient, store: Store) -> None:
    turn = _turn(store, "hello", "hi")

    def read_only(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA query_only = ON")
        else:  # a PostgreSQL standby after a failover
            dbapi_connection.execute("SET default_transaction_read_only = on")
            dbapi_connection.commit()

    event.listen(store.engine, "connect", read_only)
    store.engine.dispose()
    response = client.patch(f"/api/conversations/{turn.conversation_id}",
                            json={"title": "refused"})
    assert response.status_code == 503
    assert response.headers["retry-after"]
    error = response.json()["error"]
    assert error["code"] == "storage_unavailable" and "read-only" in error["message"]
    event.remove(store.engine, "connect", read_only)
    assert client.patch(f"/api/conversations/{turn.conversation_id}",
                        json={"title": "accepted"}).status_code == 200
    assert json.loads(store.export([turn.conversation_id]))["conversations"][0][
        "title"] == "accepted"
