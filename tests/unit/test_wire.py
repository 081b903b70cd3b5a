"""The typed events of the daemon's streams, both ways: what the daemon builds, ``sse.encode``
writes, and the client's ``iter_sse`` and ``parse_event`` read back is the same event; what a
client cannot use is skipped, as :mod:`assistant.wire` says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant import wire
from assistant.client import Client, iter_sse
from assistant.config import load_settings
from assistant.daemon.sse import encode
from assistant.daemon.turn_events import route_event as _route_event
from assistant.routing import RouteDecision
from assistant.testing import InProcessDaemon

IDS = wire.TurnIds(conversation_id="c1", message_id="a1", user_message_id="u1")
DECISION = RouteDecision("semantic", "summarize", 0.71, "chat", 0.4, "close to 'summarize'",
                         "sum this up", {"summarize": 0.71, "chat": 0.4})

TURN: list[wire.TurnEvent] = [
    _route_event(DECISION, IDS),
    _route_event(DECISION, {**IDS, "replaces": "a0"}),
    _route_event(RouteDecision("fallback", "chat", 0.0, None, 0.0, "no match", "hi"), {}),
    wire.Progress(type="progress", done=1, total=3, message="summarizing earlier turns"),
    wire.Notice(type="notice", message="qa answers best with another model", level="warning"),
    wire.Summary(type="summary", message_id="s1", text="They asked why.", covers=4,
                 tokens_before=2100, tokens_after=300, context=2048),
    wire.Delta(type="delta", text="Grüße, 世界 \n"),
    wire.TurnDone(type="done", status="complete", model="fake", skill="chat",
                  usage=wire.TokenUsage(prompt_tokens=9, completion_tokens=2), context=None,
                  timings={"tokens_per_s": 40.5, "cached_tokens": 3}, **IDS),
    wire.TurnDone(type="done", status="cancelled", model="fake", skill="chat",
                  usage=wire.TokenUsage(prompt_tokens=0, completion_tokens=0), context=4096,
                  timings={}),
    wire.Error(type="error", code="skill_failed", message="the skill failed", **IDS),
]
INGEST: list[wire.IngestEvent] = [
    wire.Progress(type="progress", done=2, total=5, message="notes.md (1/2)"),
    wire.Document(type="document", path="/home/u/notes.md", status="added", chunks=5,
                  message="", document_id="d1"),
    wire.Document(type="document", path="/home/u/x.bin", status="failed", chunks=0,
                  message="not a supported file", document_id=""),
    wire.IngestDone(type="done", added=1, updated=0, unchanged=0, failed=1),
    wire.Error(type="error", code="ingestion_failed", message="disk full"),
]


def read(frames: bytes, kinds: wire.EventKinds[Any]) -> list[Any]:
    """What the client makes of ``frames``: every event it keeps."""
    parsed = (wire.parse_event(name, data, kinds)
              for name, data in iter_sse(iter(frames.decode().splitlines())))
    return [event for event in parsed if event is not None]


@pytest.mark.parametrize("event", TURN, ids=lambda e: e["type"])
def test_a_turn_event_comes_back_as_it_was_sent(event: wire.TurnEvent) -> None:
    assert read(encode(event), wire.TURN_EVENTS) == [event]


@pytest.mark.parametrize("event", INGEST, ids=lambda e: e["type"])
def test_an_ingestion_event_comes_back_as_it_was_sent(event: wire.IngestEvent) -> None:
    assert read(encode(event), wire.INGEST_EVENTS) == [event]


def test_the_frames_are_the_json_of_the_event_as_built() -> None:
    assert encode(wire.Delta(type="delta", text="é")) == (
        'event: delta\ndata: {"type": "delta", "text": "é"}\n\n'.encode())
    # The route event is the decision's fields in its order, then the turn's ids.
    route = _route_event(DECISION, IDS)
    assert list(route.items()) == list({"type": "route", **DECISION.to_dict(), **IDS}.items())


def test_the_required_fields_are_what_every_consumer_reads() -> None:
    """The rest may be missing (an older daemon's) or odd (a plugin backend's) without the
    event being lost: a ``done`` skipped would leave a reply streaming forever."""
    assert wire.TurnDone.__required_keys__ == {"type", "status"}
    assert wire.Route.__required_keys__ == {"type", "skill"}
    assert wire.Error.__required_keys__ == {"type", "message"}
    assert set(wire.TURN_EVENTS.types) == {"route", "progress", "notice", "summary", "delta",
                                           "guard", "citation", "done", "error"}


@pytest.mark.parametrize(("name", "data", "dropped"), [
    ("route", {**TURN[0], "score": "high"}, "score"),
    ("done", {**TURN[7], "usage": {"prompt_tokens": "many", "completion_tokens": 2}}, "usage"),
    ("done", {**TURN[7], "timings": "fast"}, "timings"),
    ("done", {**TURN[7], "confidence": "high"}, "confidence"),
    ("done", {**TURN[7], "message_id": 7}, "message_id"),
    ("error", {"type": "error", "code": 500, "message": "boom"}, "code"),
], ids=str)
def test_an_odd_optional_field_costs_the_field_not_the_event(
        name: str, data: dict[str, Any], dropped: str) -> None:
    event = wire.parse_event(name, json.dumps(data), wire.TURN_EVENTS)
    assert event is not None and dropped not in event
    assert {**event, dropped: data[dropped]} == data


def test_an_older_daemons_done_without_the_newer_fields_is_read() -> None:
    old = {"type": "done", "status": "complete", "conversation_id": "c1"}
    assert wire.parse_event("done", json.dumps(old), wire.TURN_EVENTS) == old


def frame(data: object) -> str:
    return data if isinstance(data, str) else json.dumps(data)


DELTA = {"type": "delta", "text": "hi"}


@pytest.mark.parametrize(("name", "data"), [
    ("a-future-event", {"type": "a-future-event", "x": 1}),  # a newer daemon's
    ("message", "not json"),
    ("delta", '"a string"'),
    ("delta", {"text": "no type"}),
    ("delta", {"type": "delta"}),  # a required field missing
    ("delta", {"type": "delta", "text": None}),  # of the wrong type
    ("route", {**TURN[0], "skill": None}),  # a required field of the wrong type
    ("done", {"type": "done", "model": "m"}),  # no status
    ("progress", {"type": "progress", "done": True, "total": 1, "message": ""}),
    ("notice", DELTA),  # the frame's name is not its type
    ("document", dict(INGEST[1])),  # not an event of a turn
], ids=str)
def test_what_a_turn_client_cannot_use_is_skipped(name: str, data: object) -> None:
    assert wire.parse_event(name, frame(data), wire.TURN_EVENTS) is None


def test_the_same_type_has_the_shape_of_its_stream() -> None:
    turn_done, ingest_done = json.dumps(TURN[7]), json.dumps(INGEST[3])
    assert wire.parse_event("done", turn_done, wire.TURN_EVENTS) == TURN[7]
    assert wire.parse_event("done", turn_done, wire.INGEST_EVENTS) is None
    assert wire.parse_event("done", ingest_done, wire.INGEST_EVENTS) == INGEST[3]
    assert wire.parse_event("done", ingest_done, wire.TURN_EVENTS) is None


def test_fields_a_client_does_not_know_are_kept() -> None:
    newer = {**DELTA, "lang": "en"}
    assert wire.parse_event("delta", json.dumps(newer), wire.TURN_EVENTS) == newer


def test_the_client_skips_events_it_cannot_use_and_reads_on(isolated_env: dict[str, str]
                                                           ) -> None:
    body = (encode(TURN[0]) + b'event: a-future-event\ndata: {"type": "a-future-event"}\n\n'
            + b"event: delta\ndata: {not json}\n\n" + encode(TURN[6]) + encode(TURN[7]))

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/turns"
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with Client(load_settings(environ=isolated_env)) as client:
        client.http = httpx.Client(transport=httpx.MockTransport(answer),
                                   base_url="http://assistant")
        assert list(client.stream_turn("hello")) == [TURN[0], TURN[6], TURN[7]]


@pytest.mark.asyncio
async def test_every_event_of_a_real_turn_and_ingestion_is_read(
        fake_daemon: InProcessDaemon, tmp_path: Path) -> None:
    """The daemon's events fit their types: the client skips none of them."""
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nThe meeting moved to Tuesday.\n", encoding="utf-8")
    async with fake_daemon.http() as http:
        turn = await http.post("/api/turns", json={"text": "hello there", "skill": "chat"})
        ingest = await http.post("/api/documents", json={"paths": [str(notes), "/nowhere"]})
    for response, kinds, last in ((turn, wire.TURN_EVENTS, "done"),
                                  (ingest, wire.INGEST_EVENTS, "done")):
        frames = list(iter_sse(iter(response.text.splitlines())))
        events = read(response.content, kinds)
        assert len(events) == len(frames) > 1
        assert events[-1]["type"] == last
    assert {e["type"] for e in read(ingest.content, wire.INGEST_EVENTS)} == {
        "progress", "document", "done"}


def test_a_stream_that_ends_without_done_or_error_is_an_error(isolated_env: dict[str, str]
                                                              ) -> None:
    from assistant.errors import DaemonError

    body = encode(TURN[0]) + encode(TURN[6])  # the daemon died mid-reply

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with Client(load_settings(environ=isolated_env)) as client:
        client.http = httpx.Client(transport=httpx.MockTransport(answer),
                                   base_url="http://assistant")
        seen: list[Any] = []
        with pytest.raises(DaemonError, match="turn stream stopped early"):
            seen.extend(client.stream_turn("hello"))
        assert seen == [TURN[0], TURN[6]]
