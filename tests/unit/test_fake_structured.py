"""Structured output for plugin authors: a skill asks ``ctx.generate`` for a JSON schema and the
fake model of ``assistant.testing`` answers with JSON that follows it; a grammar it refuses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from assistant import ChatMessage, DeltaEvent, Event, GenerationParams, Skill, SkillContext, Turn
from assistant.errors import RequestError
from assistant.skills import ErrorEvent
from assistant.testing import FakeBackend, fake_context, run_skill_text, smallest_json


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=3)
    priority: Literal["low", "high"]
    tags: list[str] = Field(min_length=1, max_length=4)
    due: str | None
    code: str = Field(pattern=r"^[A-Z]{2}-\d{3}$")
    note: str = ""  # optional: left out


class FileTicket(Skill):
    """Turns a request into a ticket: the model's reply must follow ``Ticket``'s schema."""

    name = "ticket"
    description = "File a ticket."

    def __init__(self, grammar: str | None = None) -> None:
        self.grammar = grammar

    async def run(self, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        params = (GenerationParams(grammar=self.grammar) if self.grammar
                  else GenerationParams(json_schema=Ticket.model_json_schema(), max_tokens=200))
        reply = "".join([piece async for piece in ctx.generate(
            [ChatMessage("user", turn.text)], params)])
        ticket = Ticket.model_validate_json(reply)
        yield DeltaEvent(f"{ticket.priority}: {ticket.title}")


def test_a_skill_gets_json_that_follows_its_schema() -> None:
    backend = FakeBackend()
    text, events = asyncio.run(run_skill_text(FileTicket(), "the printer is on fire",
                                              fake_context(backend)))
    assert not [e for e in events if isinstance(e, ErrorEvent)], events
    assert text == "low: aaa"
    assert backend.params[0].json_schema == Ticket.model_json_schema()
    reply = json.dumps(smallest_json(Ticket.model_json_schema()))
    assert Ticket.model_validate_json(reply) == Ticket(title="aaa", priority="low", tags=[""],
                                                       due="", code="AA-000")


def test_a_scripted_reply_wins_over_the_schema() -> None:
    scripted = ('{"title": "Fire", "priority": "high", "tags": ["hw"], "due": null, '
                '"code": "HW-001"}')
    text, _ = asyncio.run(run_skill_text(FileTicket(), "fire",
                                         fake_context(FakeBackend([scripted]))))
    assert text == "high: Fire"


def test_a_schema_the_daemon_would_refuse_is_refused_by_the_fake_too() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
              "required": ["n"]}
    with pytest.raises(RequestError, match="'minimum'"):
        asyncio.run(_first(FakeBackend(), GenerationParams(json_schema=schema)))


def test_a_grammar_is_refused_by_name_not_answered_unconstrained() -> None:
    text, events = asyncio.run(run_skill_text(FileTicket(grammar='root ::= "yes"'), "fire"))
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert text == "" and errors and "GBNF grammar" in errors[0].message, events


async def _first(backend: FakeBackend, params: GenerationParams) -> Any:
    return await anext(backend.chat("fake", [ChatMessage("user", "x")], params))


@pytest.mark.parametrize(("schema", "value"), [
    ({}, None),
    ({"type": "object"}, {}),
    ({"type": ["integer", "null"]}, 0),
    ({"type": "number"}, 0),
    ({"type": "boolean"}, False),
    ({"const": {"k": [1]}}, {"k": [1]}),
    ({"enum": ["b", "a"]}, "b"),
    ({"type": "string", "minLength": 2, "maxLength": 5}, "aa"),
    ({"type": "string", "format": "date-time"}, "2000-01-01T00:00:00Z"),
    ({"type": "string", "format": "uuid4"}, "00000000-0000-0000-0000-000000000000"),
    ({"type": "string", "pattern": r"^(ab|c)+-\d{2}[^a-z]?$"}, "c-00"),
    ({"type": "array", "prefixItems": [{"const": 1}], "items": {"type": "string"},
      "minItems": 3}, [1, "", ""]),
    ({"anyOf": [{"type": "null"}, {"type": "string"}]}, None),
    ({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"type": "object", "properties": {"b": {"type": "boolean"}},
                 "required": ["b"]}]}, {"a": 0, "b": False}),
    ({"type": "object", "required": ["x"], "properties": {"x": {"$ref": "#/definitions/p"}},
      "definitions": {"p": {"type": "array", "minItems": 1, "items": {"const": "p"}}}},
     {"x": ["p"]}),
])
def test_the_smallest_value_of_each_keyword(schema: dict[str, Any], value: Any) -> None:
    assert smallest_json(schema) == value


def test_a_required_property_that_recurses_is_a_clear_error() -> None:
    schema = {"$defs": {"n": {"type": "object", "required": ["next"],
                              "properties": {"next": {"$ref": "#/$defs/n"}}}},
              "$ref": "#/$defs/n"}
    with pytest.raises(ValueError, match="recurse"):
        smallest_json(schema)
