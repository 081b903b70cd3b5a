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

import re
from collections.abc import Mapping
from typing import Any, NoReturn

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
# The converter spells repetitions out (an array of at most 1,000 items is 1,000 nested
# optional rules) and llama.cpp parses a grammar recursively: these bound what one request
# can make the model host build.
MAX_DEPTH = 32
MAX_ITEMS = 1000
MAX_GRAMMAR = 20_000  # characters of a GBNF grammar
_COUNTS = re.compile(r"\{(\d+)(?:,(\d*))?\}")
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


def check(schema: Any, where: str = "schema", param: str = _PARAM) -> None:
    """A :class:`RequestError` for ``param`` unless the grammar enforces all of ``schema``
    (see :func:`_check`); ``where`` names the schema in the message."""
    try:
        _check(schema, where, 0)
    except _Unenforceable as exc:
        raise RequestError(f"{param}: {exc}", param=param) from None


class _Unenforceable(ValueError):
    pass


def _check(schema: Any, where: str, depth: int) -> None:
    """Refuse ``schema`` unless the grammar enforces all of it, at any depth: every keyword
    one the converter turns into rules *in the combination given* (it takes the first of
    ``$ref``, ``anyOf``/``oneOf``, a list of types, ``const``, ``enum``, object, array,
    ``pattern``, ``format``, length and drops the rest of the node) or a mere annotation; and
    no node so deep or so large that the grammar built from it would be."""
    if depth > MAX_DEPTH:
        _refuse(f"the schema nests deeper than {MAX_DEPTH} levels (at {where})")
    if isinstance(schema, bool):
        if not schema:
            _refuse(f"the schema at {where} is false (nothing matches it)")
        return
    if not isinstance(schema, Mapping):
        _refuse(f"the schema at {where} is not an object")
    for key in schema:
        if key not in ENFORCED and key not in ANNOTATIONS:
            _refuse(f"the JSON schema keyword {key!r} (at {where}.{key}) cannot be enforced "
                    "while decoding; remove it, or check the reply yourself")
    for key in ("$defs", "definitions"):
        if key in schema:
            _each(schema[key], f"{where}.{key}", depth)
    rules = {k for k in schema if k not in ANNOTATIONS and k not in {"$defs", "definitions"}}
    kind = schema.get("type")
    if "$ref" in schema:
        ref = schema["$ref"]
        if not (isinstance(ref, str) and ref.startswith("#/")):
            _refuse(f"{where}.$ref must point inside the schema (\"#/$defs/…\"); nothing "
                    "is fetched")
        _alone("$ref", rules, where)
    elif "anyOf" in schema or "oneOf" in schema:
        key = "anyOf" if "anyOf" in schema else "oneOf"
        _alone(key, rules, where)
        _list(schema[key], f"{where}.{key}", depth)
    elif isinstance(kind, list):
        for name in kind:
            _type(name, where)
        _alone("type", rules, where, "a list of types")
    elif "const" in schema or "enum" in schema:
        key = "const" if "const" in schema else "enum"
        if key == "enum" and not (isinstance(schema["enum"], list) and schema["enum"]):
            _refuse(f"{where}.enum must be a non-empty list")
        _alone(key, rules - {"type"}, where)
    else:
        if kind is not None:
            _type(kind, where)
        _node(schema, rules, kind, where, depth)


def _node(schema: Mapping[str, Any], rules: set[str], kind: Any, where: str,
          depth: int) -> None:
    """A node with one type (or none): the object, array and string branches."""
    extra = schema.get("additionalProperties")
    if kind in (None, "object") and ("properties" in schema or extra not in (None, True)):
        props = schema.get("properties", {})
        if not isinstance(props, Mapping):
            _refuse(f"{where}.properties must be an object")
        if len(props) > MAX_ITEMS:
            _refuse(f"{where}.properties has more than {MAX_ITEMS} properties")
        _each(props, f"{where}.properties", depth)
        required = schema.get("required", [])
        missing = [r for r in required if r not in props] if isinstance(required, list) else 0
        if missing or not isinstance(required, list):
            _refuse(f"{where}.required must list properties of {where}.properties "
                    f"(not {missing or required!r})")
        if isinstance(extra, Mapping):
            _check(extra, f"{where}.additionalProperties", depth + 1)
        _only(rules, {"type", "properties", "required", "additionalProperties"}, where)
    elif kind in (None, "object") and "allOf" in schema:
        parts = schema["allOf"]
        if not isinstance(parts, list) or not all(
                isinstance(p, Mapping) and ("properties" in p or "$ref" in p) for p in parts):
            _refuse(f"{where}.allOf: only objects with properties can be combined")
        _list(parts, f"{where}.allOf", depth)
        _only(rules, {"type", "allOf"}, where)
    elif kind in (None, "array") and ("items" in schema or "prefixItems" in schema):
        if "prefixItems" in schema and "items" not in schema:
            _list(schema["prefixItems"], f"{where}.prefixItems", depth)
            _only(rules, {"type", "prefixItems"}, where)
        else:
            _check(schema["items"], f"{where}.items", depth + 1)
            _bounds(schema, ("minItems", "maxItems"), where)
            _only(rules, {"type", "items", "minItems", "maxItems"}, where)
    elif kind in (None, "string") and "pattern" in schema:
        pattern = schema["pattern"]
        if not isinstance(pattern, str) or len(pattern) > 1000:
            _refuse(f"{where}.pattern must be a string of at most 1000 characters")
        for low, high in _COUNTS.findall(pattern):
            if max(int(low), int(high or 0)) > MAX_ITEMS:
                _refuse(f"{where}.pattern repeats more than {MAX_ITEMS} times")
        _only(rules, {"type", "pattern"}, where)
    elif kind in (None, "string") and "format" in schema:
        if schema["format"] not in FORMATS:
            _refuse(f"the string format {schema['format']!r} (at {where}.format) cannot be "
                    "enforced while decoding; supported: " + ", ".join(sorted(FORMATS)))
        _only(rules, {"type", "format"}, where)
    elif kind == "string" and ("minLength" in schema or "maxLength" in schema):
        _bounds(schema, ("minLength", "maxLength"), where)
        _only(rules, {"type", "minLength", "maxLength"}, where)
    else:
        _only(rules, {"type"}, where)


def check_grammar(text: str) -> None:
    """Refuse a GBNF grammar too long, or nested deeper than :data:`MAX_DEPTH` groups, for
    llama.cpp's recursive parser; whether it parses, the model host checks."""
    if len(text) > MAX_GRAMMAR:
        raise RequestError(f"grammar: longer than {MAX_GRAMMAR} characters", param="grammar")
    depth = deepest = 0
    quote = ""  # inside "…" or […]
    escaped = comment = False
    for char in text:
        if comment:
            comment = char != "\n"
        elif escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "\"[":
            quote = "\"" if char == "\"" else "]"
        elif char == "#":
            comment = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise RequestError(f"grammar: groups nest deeper than {MAX_DEPTH} levels",
                           param="grammar")


def _alone(key: str, rules: set[str], where: str, what: str = "") -> None:
    """Refuse the keywords beside ``key`` that the converter drops once it takes ``key``."""
    dropped = sorted(rules - {key})
    if dropped:
        _refuse(f"{dropped[0]!r} (at {where}.{dropped[0]}) cannot be enforced beside "
                f"{what or repr(key)}; move it into each alternative, or remove it")


def _only(rules: set[str], kept: set[str], where: str) -> None:
    dropped = sorted(rules - kept)
    if dropped:
        _refuse(f"{dropped[0]!r} (at {where}.{dropped[0]}) cannot be enforced with the "
                f"other keywords of {where}; remove it, or check the reply yourself")


def _bounds(schema: Mapping[str, Any], keys: tuple[str, str], where: str) -> None:
    for key in keys:
        value = schema.get(key)
        if value is not None and not (isinstance(value, int) and 0 <= value <= MAX_ITEMS):
            _refuse(f"{where}.{key} must be a whole number from 0 to {MAX_ITEMS} (the grammar "
                    "spells every repetition out)")


def _type(name: Any, where: str) -> None:
    if name not in TYPES:
        _refuse(f"unknown type {name!r} at {where}.type")


def _list(parts: Any, where: str, depth: int) -> None:
    if not isinstance(parts, list) or not parts or len(parts) > MAX_ITEMS:
        _refuse(f"{where} must be a non-empty list of at most {MAX_ITEMS} schemas")
    for i, sub in enumerate(parts):
        _check(sub, f"{where}[{i}]", depth + 1)


def _each(subs: Any, where: str, depth: int) -> None:
    if not isinstance(subs, Mapping):
        _refuse(f"{where} must be an object")
    for name, sub in subs.items():
        _check(sub, f"{where}.{name}", depth + 1)


def _refuse(message: str) -> NoReturn:
    raise _Unenforceable(message)
