"""The smallest value a JSON schema allows: what the test kit's fake model answers when a
skill asks for structured output (:class:`assistant.testing.FakeBackend`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Values of the string formats the grammar enforces (llama.cpp's converter wants a time zone).
_FORMATS = {"date": "2000-01-01", "time": "00:00:00Z", "date-time": "2000-01-01T00:00:00Z"}
_UUID = "00000000-0000-0000-0000-000000000000"
_ESCAPES = {"d": "0", "w": "a", "s": " "}


def smallest_json(schema: Any) -> Any:
    """The smallest value that follows ``schema`` (one the daemon takes: the keywords
    docs/api.md lists): an object of its required properties only, an array of ``minItems``
    items, the first ``enum`` value, the first ``anyOf``/``oneOf`` alternative, the first of a
    list of types, ``""``, ``0``, ``false`` or ``null``; a string the shortest that its
    ``minLength``, ``format`` or ``pattern`` allows. Deterministic: same schema, same value.
    A ``ValueError`` for a schema it cannot follow (a required property that recurses)."""
    return _smallest(schema, schema, 0)


def _smallest(node: Any, root: Any, depth: int) -> Any:
    if depth > 64:
        raise ValueError("smallest_json: the schema's required properties recurse forever")
    if not isinstance(node, Mapping):
        return None  # ``true``: any value
    deeper = depth + 1
    if "$ref" in node:
        target = root
        for part in str(node["$ref"]).removeprefix("#").strip("/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")] if part else target
        return _smallest(target, root, deeper)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][0]
    if alternatives := node.get("anyOf") or node.get("oneOf"):
        return _smallest(alternatives[0], root, deeper)
    if "allOf" in node:  # of objects: one with every part's required properties
        return {k: v for part in node["allOf"] for k, v in _smallest(part, root, deeper).items()}
    kind = node.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind is None:
        kind = ("object" if {"properties", "required", "additionalProperties"} & node.keys()
                else "array" if {"items", "prefixItems", "minItems"} & node.keys()
                else "string" if {"pattern", "format", "minLength"} & node.keys() else "null")
    if kind == "object":
        properties = node.get("properties", {})
        return {name: _smallest(properties.get(name, True), root, deeper)
                for name in node.get("required", [])}
    if kind == "array":
        items = [_smallest(item, root, deeper) for item in node.get("prefixItems", [])]
        missing = node.get("minItems", 0) - len(items)
        return items + [_smallest(node.get("items", True), root, deeper)] * max(missing, 0)
    if kind == "string":
        fmt = node.get("format")
        if fmt is not None and (fmt.startswith("uuid") or fmt in _FORMATS):
            return _UUID if fmt.startswith("uuid") else _FORMATS[fmt]
        if fmt is not None:
            raise ValueError(f"smallest_json: no value of format {fmt!r}")
        if "pattern" in node:
            return _pattern_example(node["pattern"])
        return "a" * node.get("minLength", 0)
    return {"integer": 0, "number": 0, "boolean": False}.get(kind)


def _pattern_example(pattern: str) -> str:
    """The shortest string ``pattern`` matches, for the regular expressions llama.cpp's
    converter takes (literals, ``.``, classes, groups, ``|``, quantifiers, ``^``/``$``)."""
    text, end = _alternatives(pattern, 0)
    if end != len(pattern) or not re.fullmatch(pattern, text):
        raise ValueError(f"smallest_json: cannot write a string that matches {pattern!r}")
    return text


def _alternatives(pattern: str, i: int) -> tuple[str, int]:
    """The shortest of ``pattern[i:]``'s alternatives up to an unmatched ``)``, and where it
    stopped."""
    options = []
    while True:
        text, i = _sequence(pattern, i)
        options.append(text)
        if i >= len(pattern) or pattern[i] != "|":
            return min(options, key=len), i
        i += 1


def _sequence(pattern: str, i: int) -> tuple[str, int]:
    out = []
    while i < len(pattern) and pattern[i] not in "|)":
        char = pattern[i]
        if char == "(":
            i += 3 if pattern.startswith("(?:", i) else 1
            atom, i = _alternatives(pattern, i)
            i += 1  # the ")"
        elif char == "[":
            close = pattern.index("]", i + 2 if pattern[i + 1] == "^" else i + 1)
            atom, i = _class_member(pattern[i + 1:close]), close + 1
        elif char == "\\":
            atom, i = _ESCAPES.get(pattern[i + 1], pattern[i + 1]), i + 2
        elif char in "^$":
            atom, i = "", i + 1
        else:
            atom, i = ("a" if char == "." else char), i + 1
        count = 1
        if i < len(pattern) and pattern[i] in "*+?":
            count, i = (1 if pattern[i] == "+" else 0), i + 1
        elif i < len(pattern) and (counts := re.match(r"\{(\d+)(?:,\d*)?\}", pattern[i:])):
            count, i = int(counts[1]), i + counts.end()
        out.append(atom * count)
    return "".join(out), i


def _class_member(members: str) -> str:
    """A character of the class ``[members]``."""
    if not members.startswith("^"):
        return _ESCAPES.get(members[1], members[1]) if members[0] == "\\" else members[0]
    return next(c for c in "a0_ -.xyzAZ9" if re.fullmatch(f"[{members}]", c))
