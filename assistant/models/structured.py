"""Structured output: which JSON schemas can be enforced while decoding, checked before any
model runs.

The model host turns a JSON schema into a llama.cpp grammar (llama-cpp-python's converter,
the one llama.cpp ships) and samples only tokens the grammar allows, so the reply parses and
validates by construction. The converter quietly drops what it cannot express (``minimum``,
``uniqueItems``, ``not``…): a reply that honoured the grammar could still break such a
schema. So every keyword is checked here, and one the grammar cannot honour is refused with a
400 naming it and where it is, never passed on to yield a reply that breaks the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assistant.errors import RequestError

# Keywords the converter turns into grammar rules.
ENFORCED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "definitions", "pattern", "format", "minLength", "maxLength",
})
# Keywords that say what a value means, not what it may be: nothing to enforce.
ANNOTATIONS = frozenset({
    "title", "description", "$schema", "$id", "$comment", "examples", "default",
    "deprecated", "readOnly", "writeOnly",
})
FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4",
                     "uuid5"})
TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
# The grammar for ``{"type": "json_object"}``: any JSON object.
ANY_OBJECT: dict[str, Any] = {"type": "object"}
_PARAM = "response_format"


def schema_for(response_format: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema a reply must follow, from OpenAI's ``response_format`` (``None``: free
    text); a :class:`RequestError` naming what cannot be honoured."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(ANY_OBJECT)
    if kind != "json_schema":
        raise RequestError(f"response_format: type {kind!r} is not one of text, json_object, "
                           "json_schema", param=_PARAM)
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name", ""), str):
        raise RequestError("response_format: json_schema must be an object with a name and "
                           "a schema", param=_PARAM)
    schema = spec.get("schema", ANY_OBJECT)
    check(schema)
    return dict(schema)


def check(schema: Any, where: str = "schema") -> None:
    """Refuse ``schema`` unless every keyword in it, at any depth, is one the grammar
    enforces or a mere annotation."""
    if isinstance(schema, bool):
        if schema:
            return
        raise RequestError(f"response_format: the schema at {where} is false (nothing "
                           "matches it)", param=_PARAM)
    if not isinstance(schema, Mapping):
        raise RequestError(f"response_format: the schema at {where} is not an object",
                           param=_PARAM)
    for key, value in schema.items():
        at = f"{where}.{key}"
        if key in ANNOTATIONS:
            continue
        if key not in ENFORCED:
            raise RequestError(f"response_format: the JSON schema keyword {key!r} (at {at}) "
                               "cannot be enforced while decoding; remove it, or check the "
                               "reply yourself", param=_PARAM)
        if key == "type":
            for name in value if isinstance(value, list) else [value]:
                if name not in TYPES:
                    raise RequestError(f"response_format: unknown type {name!r} at {at}",
                                       param=_PARAM)
        elif key == "format" and value not in FORMATS:
            raise RequestError(f"response_format: the string format {value!r} (at {at}) "
                               "cannot be enforced while decoding; supported: "
                               + ", ".join(sorted(FORMATS)), param=_PARAM)
        elif key in {"properties", "$defs", "definitions"}:
            if not isinstance(value, Mapping):
                raise RequestError(f"response_format: {at} must be an object", param=_PARAM)
            for name, sub in value.items():
                check(sub, f"{at}.{name}")
        elif key in {"anyOf", "oneOf", "allOf", "prefixItems"}:
            if not isinstance(value, list) or not value:
                raise RequestError(f"response_format: {at} must be a non-empty list",
                                   param=_PARAM)
            for i, sub in enumerate(value):
                check(sub, f"{at}[{i}]")
        elif key == "additionalProperties" and isinstance(value, bool):
            continue
        elif key in {"items", "additionalProperties"}:
            check(value, at)
        elif key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
            raise RequestError(f"response_format: {at} must point inside the schema "
                               "(\"#/$defs/…\"); nothing is fetched", param=_PARAM)
