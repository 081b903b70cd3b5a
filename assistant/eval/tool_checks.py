"""Checks on a tool call's argument that hold whatever its surface form.

A check is ``{kind: expected}``:

- ``equals``: strings equal once trimmed, case aside; numbers equal as numbers (120 == 120.0);
- ``contains``: a string holding ``expected`` (or each string of a list of them), case aside;
- ``one_of``: ``equals`` one of a list;
- ``matches``: a string the regular expression matches whole, case aside;
- ``includes``: a list of strings, one containing each of ``expected``, case aside;
- ``evaluates_to``: an arithmetic expression (numbers, ``+ - * / // % **``, parentheses)
  worth ``expected``.

A missing argument fails every check.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equals(value: Any, expected: Any) -> bool:
    if isinstance(expected, str):
        return isinstance(value, str) and value.strip().casefold() == expected.casefold()
    if _number(expected):
        return _number(value) and math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9)
    return bool(value == expected)


def _contains(value: Any, expected: str | list[str]) -> bool:
    wanted = [expected] if isinstance(expected, str) else expected
    return isinstance(value, str) and all(w.casefold() in value.casefold() for w in wanted)


def _one_of(value: Any, expected: list[Any]) -> bool:
    return any(_equals(value, e) for e in expected)


def _matches(value: Any, expected: str) -> bool:
    return isinstance(value, str) and re.fullmatch(expected, value.strip(), re.I) is not None


def _includes(value: Any, expected: list[str]) -> bool:
    return isinstance(value, list) and all(
        any(isinstance(v, str) and e.casefold() in v.casefold() for v in value)
        for e in expected)


def _evaluates_to(value: Any, expected: float) -> bool:
    if not isinstance(value, str):
        return False
    worth = arithmetic(value)
    return worth is not None and math.isclose(worth, expected, rel_tol=1e-9, abs_tol=1e-9)


CHECKS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": _equals, "contains": _contains, "one_of": _one_of, "matches": _matches,
    "includes": _includes, "evaluates_to": _evaluates_to,
}


def passes(value: Any, check: Mapping[str, Any]) -> bool:
    """Whether ``value`` (``None``: the argument is missing) passes ``check``."""
    (kind, expected), = check.items()
    return value is not None and CHECKS[kind](value, expected)


def describe(function: str, argument: str, check: Mapping[str, Any], value: Any) -> str:
    """A failed check, for the log: ``get_weather.city: 'Lyon' fails contains 'Paris'``."""
    (kind, expected), = check.items()
    got = "missing" if value is None else repr(value)
    return f"{function}.{argument}: {got} fails {kind} {expected!r}"


_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos,
}
_MAX_EXPONENT = 64  # 9 ** 9 ** 9 would never finish


def arithmetic(expression: str) -> float | None:
    """The worth of an arithmetic expression (``×`` and ``÷`` read as ``*`` and ``/``);
    ``None`` when it is not one."""
    text = expression.replace("×", "*").replace("÷", "/")
    try:
        return float(_worth(ast.parse(text, mode="eval").body))
    except (SyntaxError, ValueError, ArithmeticError, TypeError, RecursionError):
        return None


def _worth(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(
            node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return float(_OPERATORS[type(node.op)](_worth(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _worth(node.left), _worth(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ValueError("exponent too large")
        return float(_OPERATORS[type(node.op)](left, right))
    raise ValueError(f"not arithmetic: {ast.dump(node)}")
