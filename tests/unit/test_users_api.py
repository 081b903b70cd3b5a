"""Users over TCP, on the daemon in this process (fake model): each request is its token's
owner's; another's conversation, message or document answers 404 and lists, search, export
and qa never show it; a revoke holds from the next request; the owner (runtime token, Unix
socket) is unaffected."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio

from assistant.documents.chunking import CHUNKER_VERSION
from assistant.store.documents import NewChunk
from assistant.testing import InProcessDaemon, hashed_vector, in_process_daemon

RUNTIME_TOKEN = "r" * 43
HOST = "127.0.0.1:8765"


@pytest_asyncio.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 ) -> AsyncIterator[InProcessDaemon]:
    from assistant.config import load_settings

    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")
    async with in_process_daemon(load_settings(), token=RUNTIME_TOKEN) as running:
        running.services.access.allowed_hosts.add(HOST)
        yield running


def tcp(daemon: InProcessDaemon, token: str) -> httpx.AsyncClient:
    """A client of the app as a TCP peer sees it, with ``token``."""
    asgi = daemon.asgi

    async def tcp_peer(scope: Any, receive: Any, send: Any) -> None:
        await asgi({**scope, "server": ("127.0.0.1", 8765)}, receive, send)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=tcp_peer),
                             base_url=f"http://{HOST}",
                             headers={"authorization": f"Bearer {token}"})


async def turn(client: httpx.AsyncClient, text: str, **fields: Any) -> list[dict[str, Any]]:
    response = await client.post("/api/turns", json={"text": text, **fields})
    assert response.status_code == 200, response.text
    return [json.loads(line[5:]) for line in response.text.splitlines()
            if line.startswith("data:")]


def add_document(daemon: InProcessDaemon, owner: int, path: str, text: str) -> str:
    assert daemon.services.store is not None
    blob = np.asarray(hashed_vector(text), dtype=np.float32).tobytes()
    return daemon.services.store.owned_by(owner).documents.add(
        path, "notes", f"sha-{owner}", [NewChunk(0, "line 1", text, blob)], CHUNKER_VERSION).id


@pytest.mark.asyncio
async def test_users_see_only_their_own_conversations(daemon: InProcessDaemon) -> None:
    store = daemon.services.store
    assert store is not None
    _, a_token = store.users.add("alice")
    _, b_token = store.users.add("bob")
    async with tcp(daemon, a_token) as a, tcp(daemon, b_token) as b, \
            tcp(daemon, RUNTIME_TOKEN) as owner, daemon.http() as unix:
        mine = (await turn(a, "tell me about the pelican migration"))[0]
        cid, mid = mine["conversation_id"], mine["message_id"]
        owners = (await turn(owner, "the owner's pelican question"))[0]
        assert [c["id"] for c in (await a.get("/api/conversations")).json()[
            "conversations"]] == [cid]
        for client in (b,):
            assert (await client.get("/api/conversations")).json() == {"conversations": []}
            assert (await client.get("/api/search", params={"q": "pelican"})).json() == {
                "hits": []}
            assert cid not in (await client.get("/api/export")).text
            for method, path, body in (
                ("GET", f"/api/conversations/{cid}", None),
                ("PATCH", f"/api/conversations/{cid}", {"title": "mine now"}),
                ("DELETE", f"/api/conversations/{cid}", None),
                ("DELETE", f"/api/conversations/{cid}/states", None),
                ("GET", f"/api/conversations/{cid}/export", None),
                ("GET", f"/api/messages/{mid}", None),
                ("POST", f"/api/messages/{mid}/undo", None),
                ("POST", f"/api/messages/{mid}/reroute", {"skill": "chat"}),
                ("POST", "/api/turns", {"text": "more", "conversation_id": cid}),
                ("POST", "/api/turns", {"text": "", "regenerate": mid}),
            ):
                response = await client.request(method, path, json=body)
                assert response.status_code == 404, (method, path, response.text)
        # The owner, over TCP or the socket, sees their own and no user's.
        for client in (owner, unix):
            listed = (await client.get("/api/conversations")).json()["conversations"]
            assert [c["id"] for c in listed] == [owners["conversation_id"]]
            hits = (await client.get("/api/search", params={"q": "pelican"})).json()["hits"]
            assert {h["conversation_id"] for h in hits} == {owners["conversation_id"]}
            assert (await client.get(f"/api/conversations/{cid}")).status_code == 404
        # A turn through /v1 (model "assistant") is stored as its caller's too.
        v1 = await b.post("/v1/chat/completions", json={
            "model": "assistant", "messages": [{"role": "user", "content": "a heron"}]})
        assert v1.status_code == 200, v1.text
        listed = (await b.get("/api/conversations")).json()["conversations"]
        assert len(listed) == 1
        for client in (a, owner):
            assert (await client.get(f"/api/conversations/{listed[0]['id']}")).status_code == 404
        # Alice's conversation is untouched.
        kept = (await a.get(f"/api/conversations/{cid}")).json()
        assert len(kept["messages"]) == 2 and "mine now" not in kept["title"]
        hits = (await a.get("/api/search", params={"q": "pelican"})).json()["hits"]
        assert {h["conversation_id"] for h in hits} == {cid}


@pytest.mark.asyncio
async def test_users_see_only_their_own_documents_and_qa_cites_them_alone(
        daemon: InProcessDaemon) -> None:
    store = daemon.services.store
    assert store is not None
    alice, a_token = store.users.add("alice")
    _, b_token = store.users.add("bob")
    secret = "The walrus vault combination is 4417 and only Alice knows it."
    doc = add_document(daemon, alice.id, "/home/alice/vault.md", secret)
    async with tcp(daemon, a_token) as a, tcp(daemon, b_token) as b, daemon.http() as unix:
        assert [d["id"] for d in (await a.get("/api/documents")).json()["documents"]] == [doc]
        assert (await b.get("/api/documents")).json() == {"documents": []}
        assert (await unix.get("/api/documents")).json() == {"documents": []}
        assert (await b.delete(f"/api/documents/{doc}")).status_code == 404
        assert (await unix.delete(f"/api/documents/{doc}")).status_code == 404
        # Adding documents stays the Unix socket's (the machine's user's) alone.
        refused = await b.post("/api/documents", json={"paths": ["/etc"]})
        assert refused.status_code == 403
        question = "@qa what is the walrus vault combination?"
        theirs = await turn(b, question)
        assert not [e for e in theirs if e["type"] == "citation"]
        assert "4417" not in json.dumps(theirs)
        owners = await turn(unix, question)
        assert not [e for e in owners if e["type"] == "citation"]
        assert "4417" not in json.dumps(owners)
        own = await turn(a, question)
        assert [e["source"] for e in own if e["type"] == "citation"] == ["notes, line 1"]
    assert [d.id for d in store.owned_by(alice.id).documents.all()] == [doc]


@pytest.mark.asyncio
async def test_a_revoked_token_is_refused_at_its_next_request(daemon: InProcessDaemon) -> None:
    store = daemon.services.store
    assert store is not None
    _, token = store.users.add("carol")
    async with tcp(daemon, token) as carol, tcp(daemon, RUNTIME_TOKEN) as owner:
        assert (await carol.get("/api/conversations")).status_code == 200
        store.users.revoke("carol")  # as `assistant users revoke` does, on the database
        refused = await carol.get("/api/conversations")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert (await owner.get("/api/conversations")).status_code == 200
    async with tcp(daemon, "asu_" + "x" * 43) as stranger, tcp(daemon, "") as nobody:
        assert (await stranger.get("/api/conversations")).status_code == 401
        assert (await nobody.get("/api/conversations")).status_code == 401


@pytest.mark.asyncio
async def test_routing_corrections_are_their_makers(daemon: InProcessDaemon) -> None:
    store, turns = daemon.services.store, daemon.services.turns
    assert store is not None and turns is not None
    dave, token = store.users.add("dave")
    async with tcp(daemon, token) as client:
        first = (await turn(client, "rewrite my shopping list nicely"))[0]
        await turn(client, "", regenerate=first["message_id"])  # a turn still works
        response = await client.post(f"/api/messages/{first['message_id']}/reroute",
                                     json={"skill": "summarize"})
        assert response.status_code == 200, response.text
    routing = turns.routing
    assert "rewrite my shopping list nicely" in routing.router_of(dave.id).corrections
    assert routing.router.corrections == {}
    decision = await routing.router_of(dave.id).route("rewrite my shopping list nicely")
    assert (decision.method, decision.skill) == ("correction", "summarize")
    assert (await routing.router.route("rewrite my shopping list nicely")).method != "correction"


@pytest.mark.asyncio
async def test_what_changes_the_daemon_for_everyone_is_the_owners(
        daemon: InProcessDaemon) -> None:
    store = daemon.services.store
    assert store is not None
    _, token = store.users.add("erin")
    async with tcp(daemon, token) as user, tcp(daemon, RUNTIME_TOKEN) as owner:
        for path in ("/api/plugins", "/api/plugins/chat/enable", "/api/models/fake/unload"):
            method = "GET" if path == "/api/plugins" else "POST"
            refused = await user.request(method, path)
            assert refused.status_code == 403, path
            assert refused.json()["error"]["code"] == "owner_only"
            assert (await owner.request(method, path)).status_code == 200, path
        assert (await user.get("/health")).status_code == 200
        assert (await user.get("/v1/models")).status_code == 200
