"""The UI's daemon calls that adapt to an older daemon, on a stub client (no daemon)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from assistant.errors import RequestError
from assistant.tui.api import TuiApi


class _OlderDaemon:
    """A client whose daemon predates ``chat_model`` (its turn body forbids unknown fields)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def stream_turn(self, text: str, **fields: Any) -> Iterator[dict[str, Any]]:
        self.bodies.append(dict(fields))
        if "chat_model" in fields:
            raise RequestError("chat_model: Extra inputs are not permitted", param="chat_model")
        yield {"type": "done", "model": fields.get("model")}


def _api(client: Any) -> TuiApi:
    api = TuiApi.__new__(TuiApi)
    api.client = client
    return api


def test_an_older_daemon_gets_the_chat_model_as_the_model() -> None:
    client = _OlderDaemon()
    events = list(_api(client).stream_turn("hi", chat_model="m", conversation_id=None))
    assert events == [{"type": "done", "model": "m"}]
    assert client.bodies == [{"chat_model": "m", "conversation_id": None},
                             {"model": "m", "conversation_id": None}]
    # A regenerate goes the same way; other refusals are the user's to see.
    assert list(_api(client).stream_regenerate("r1", "hi", chat_model="m"))[-1]["model"] == "m"
    with pytest.raises(RequestError):
        list(_api(_Refusing()).stream_turn("hi", chat_model="m"))


class _Refusing(_OlderDaemon):
    def stream_turn(self, text: str, **fields: Any) -> Iterator[dict[str, Any]]:
        raise RequestError("text: too long", param="text")
        yield {}
