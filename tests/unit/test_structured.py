"""Which JSON schemas structured output takes: every keyword the grammar enforces or that
only annotates; anything else refused by name and place."""

from __future__ import annotations

from typing import Any

import pytest

from assistant.errors import RequestError
from assistant.models.structured import ANY_OBJECT, schema_for


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
            "when": {"type": ["string", "null"], "pattern": "^[0-9]{4}$"},
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
