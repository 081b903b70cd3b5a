"""Which JSON schemas structured output takes: every keyword the grammar enforces or that
only annotates; anything else refused by name and place."""

from __future__ import annotations

from typing import Any

import pytest

from assistant.errors import RequestError
from assistant.models.structured import ANY_OBJECT, check_grammar, schema_for


def wrapped(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def test_text_json_object_and_json_schema() -> None:
    assert schema_for(None) is None
    assert schema_for({"type": "text"}) is None
    assert schema_for({"type": "json_object"}) == ANY_OBJECT
    schema = {
        "title": "Order", "type": "object", "additionalProperties": False,
        "required": ["id", "items"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "the order"},
            "items": {"type": "array", "minItems": 1, "maxItems": 9,
                      "items": {"$ref": "#/$defs/item"}},
            "note": {"anyOf": [{"type": "string", "maxLength": 80}, {"type": "null"}]},
            "when": {"anyOf": [{"type": "string", "pattern": "^[0-9]{4}$"}, {"type": "null"}]},
            "flag": {"type": ["boolean", "null"], "description": "a list of types, alone"},
        },
        "$defs": {"item": {"type": "object", "properties": {
            "sku": {"const": "A1"}, "size": {"enum": ["S", "M"]}}}},
    }
    assert schema_for(wrapped(schema)) == schema


@pytest.mark.parametrize(("schema", "mentions"), [
    ({"type": "integer", "minimum": 0}, "'minimum' (at schema.minimum)"),
    ({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}},
     "'uniqueItems' (at schema.properties.tags.uniqueItems)"),
    ({"anyOf": [{"type": "string"}, {"not": {"type": "null"}}]}, "'not' (at schema.anyOf[1].not)"),
    ({"type": "string", "format": "email"}, "format 'email'"),
    ({"type": "text"}, "unknown type 'text'"),
    ({"$ref": "https://example.com/schema.json"}, "nothing is fetched"),
    ({"type": "object", "properties": {"a": False}}, "is false"),
    ({"anyOf": []}, "non-empty list"),
    ("object", "is not an object"),
    # Combinations the converter takes one branch of, dropping the rest of the node:
    ({"type": ["string", "null"], "maxLength": 5}, "'maxLength' (at schema.maxLength) cannot "
                                                    "be enforced beside a list of types"),
    ({"type": "array", "minItems": 2}, "'minItems' (at schema.minItems)"),
    ({"type": "object", "required": ["a"]}, "'required' (at schema.required)"),
    ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "not ['b']"),
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "only objects with properties"),
    ({"type": "string", "format": "date", "minLength": 3}, "'minLength' (at schema.minLength)"),
    ({"type": "string", "pattern": "^a+$", "maxLength": 3}, "'maxLength'"),
    ({"anyOf": [{"type": "string"}], "type": "string"}, "'type' (at schema.type) cannot be "
                                                        "enforced beside 'anyOf'"),
    ({"$ref": "#/$defs/a", "maxLength": 3, "$defs": {"a": {"type": "string"}}}, "'maxLength'"),
    ({"const": "a", "maxLength": 3}, "'maxLength'"),
    # Bounds on what one request can make the model host build:
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 100_000}, "from 0 to 1000"),
    ({"type": "string", "pattern": "^a{0,100000}$"}, "repeats more than 1000 times"),
    ({"type": "string", "minLength": -1}, "from 0 to 1000"),
])
def test_what_the_grammar_cannot_enforce_is_refused_by_name(schema: Any, mentions: str) -> None:
    with pytest.raises(RequestError) as refused:
        schema_for(wrapped(schema))
    assert mentions in refused.value.message and refused.value.param == "response_format"


def test_an_unknown_response_format_is_refused() -> None:
    with pytest.raises(RequestError, match="'yaml' is not one of"):
        schema_for({"type": "yaml"})
    with pytest.raises(RequestError, match="json_schema must be an object"):
        schema_for({"type": "json_schema", "json_schema": "person"})


def test_a_schema_nested_too_deep_is_refused() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    with pytest.raises(RequestError, match="nests deeper than 32 levels"):
        schema_for(wrapped(deep))


def test_a_grammar_too_long_or_nested_too_deep_is_refused() -> None:
    check_grammar('root ::= "(" [(] x  # (((( a comment\nx ::= ("a" ("b"))')
    with pytest.raises(RequestError, match="nest deeper than 32"):
        check_grammar("root ::= " + "(" * 40 + '"a"' + ")" * 40)
    with pytest.raises(RequestError, match="longer than 20000"):
        check_grammar('root ::= "' + "a" * 20_001 + '"')
