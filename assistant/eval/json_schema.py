"""Does a JSON value follow a JSON schema? For the keywords tool definitions use here.

``jsonschema`` is not a dependency, and a tool's ``parameters`` need few keywords: ``type``,
``properties``, ``required``, ``enum``, ``items``, ``additionalProperties``, ``format: date``,
and ``description`` (an annotation). :func:`known` refuses a schema using any other keyword,
rather than let it be half checked.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any

KEYWORDS = frozenset({"type", "properties", "required", "enum", "items",
                      "additionalProperties", "format", "description"})
FORMATS = frozenset({"date"})
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def known(schema: Any, where: str = "$") -> None:
    """A ``ValueError`` naming the first node of ``schema`` that uses what this check does
    not know, at any depth."""
    if not isinstance(schema, Mapping):
        raise ValueError(f"schema at {where} is not an object")
    unknown = set(schema) - KEYWORDS
    if unknown or schema.get("format", "date") not in FORMATS:
        raise ValueError(f"schema at {where} uses what this check does not know: "
                         f"{sorted(unknown) or schema['format']}")
    for name, sub in schema.get("properties", {}).items():
        known(sub, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            known(schema[key], f"{where}.{key}")


def problems(value: Any, schema: Mapping[str, Any], where: str = "$") -> list[str]:
    """What in ``value`` breaks ``schema``, each naming where (``$.unit``); empty: it follows.
    ``schema`` must pass :func:`known`."""
    kind = schema.get("type")
    if kind is not None and not _is(value, kind):
        return [f"{where}: {value!r} is not of type {kind}"]
    found: list[str] = []
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        found.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "format" in schema and isinstance(value, str) and not _is_date(value):
        found.append(f"{where}: {value!r} is not a date (YYYY-MM-DD)")
    if isinstance(value, dict):
        found += _object(value, schema, where)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], f"{where}[{i}]")
    return found


def _object(value: dict[str, Any], schema: Mapping[str, Any], where: str) -> list[str]:
    properties: Mapping[str, Any] = schema.get("properties", {})
    found = [f"{where}: {name!r} is required" for name in schema.get("required", ())
             if name not in value]
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            found += problems(item, properties[name], f"{where}.{name}")
        elif extra is False:
            found.append(f"{where}: {name!r} is not a property it allows")
        elif isinstance(extra, Mapping):
            found += problems(item, extra, f"{where}.{name}")
    return found


def _is(value: Any, kind: str | list[str]) -> bool:
    if isinstance(kind, list):
        return any(_is(value, k) for k in kind)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    checks = {
        "object": isinstance(value, dict), "array": isinstance(value, list),
        "string": isinstance(value, str), "boolean": isinstance(value, bool),
        "null": value is None, "number": number,
        # JSON has one number type: 3.0 is an integer (as jsonschema has it).
        "integer": number and float(value).is_integer(),
    }
    if kind not in checks:
        raise ValueError(f"unknown type {kind!r}")
    return checks[kind]


def _same(value: Any, expected: Any) -> bool:
    """JSON equality: 1 == 1.0, but True is not 1."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return bool(value == expected)


def _is_date(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True
