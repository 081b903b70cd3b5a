"""OpenAI's tools in a chat request, checked and turned into the daemon's types: the functions
offered (``tools``), which the model may or must call (``tool_choice``), and the calls and
results earlier turns carry in ``messages``. What cannot be honoured is a 400 naming it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from assistant.errors import RequestError
from assistant.models.backend import GenerationParams, Tool, ToolCall
from assistant.models.structured import check

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for a function's name
MAX_TOOLS = 128  # OpenAI's limit


def parse_tools(tools: list[Any] | None) -> tuple[Tool, ...]:
    if not tools:
        return ()
    if len(tools) > MAX_TOOLS:
        raise RequestError(f"tools: at most {MAX_TOOLS} tools", param="tools")
    out: list[Tool] = []
    for i, item in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(item, Mapping) or item.get("type") != "function":
            kind = item.get("type") if isinstance(item, Mapping) else item
            raise RequestError(f"{where}.type: tools of type {kind!r} are not supported "
                               "(only function)", code="unsupported_parameter", param="tools")
        function = item.get("function")
        if not isinstance(function, Mapping):
            raise RequestError(f"{where}.function must be an object", param="tools")
        name = function.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise RequestError(f"{where}.function.name must be 1 to 64 letters, digits, _ or -",
                               param="tools")
        if any(t.name == name for t in out):
            raise RequestError(f"{where}.function.name: {name!r} is offered twice",
                               param="tools")
        description = function.get("description") or ""
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(description, str) or not isinstance(parameters, Mapping):
            raise RequestError(f"{where}.function: description must be text and parameters "
                               "a JSON schema object", param="tools")
        _check_refs(parameters, f"{where}.function.parameters", _def_names(parameters))
        strict = function.get("strict")
        if strict not in (None, True, False):
            raise RequestError(f"{where}.function.strict must be true or false", param="tools")
        out.append(Tool(name, description, dict(parameters), bool(strict)))
    return tuple(out)


def parse_choice(choice: Any, tools: tuple[Tool, ...]) -> tuple[
        Literal["auto", "none", "required"], str | None]:
    """``tool_choice`` as (mode, the function it names)."""
    if choice is None:
        return ("auto" if tools else "none"), None
    if choice in ("auto", "none", "required"):
        if choice == "required" and not tools:
            raise RequestError("tool_choice: 'required' needs tools to call", param="tool_choice")
        return choice, None
    function = choice.get("function") if isinstance(choice, Mapping) else None
    if (not isinstance(choice, Mapping) or choice.get("type") != "function"
            or not isinstance(function, Mapping)):
        raise RequestError("tool_choice: give 'auto', 'none', 'required' or "
                           "{\"type\": \"function\", \"function\": {\"name\": …}}",
                           code="unsupported_parameter", param="tool_choice")
    name = function.get("name")
    if not any(t.name == name for t in tools):
        raise RequestError(f"tool_choice: {name!r} is not one of the tools offered",
                           param="tool_choice")
    return "required", str(name)


def check_params(params: GenerationParams) -> None:
    """What a generation offering tools may not ask besides, whoever asks (a request, a
    skill): a named function not offered, a schema or grammar too (a reply is calls or
    shaped text), a stop string that would cut a required call, schemas no grammar can
    enforce where calls must follow them."""
    if params.forced_tool is not None and params.forced_tool not in {t.name for t in params.tools}:
        raise RequestError(f"tool_choice: {params.forced_tool!r} is not one of the tools "
                           "offered", param="tool_choice")
    if params.constrained:
        raise RequestError("tools and response_format or grammar: a reply is either calls or "
                           "shaped text; give one", param="tools")
    required = params.tool_choice == "required" or params.forced_tool is not None
    if required and params.stop:
        raise RequestError("stop: a stop string would cut the required call; leave stop out",
                           param="stop")
    if required or any(t.strict for t in params.tools):
        check_enforceable(params.tools, params.forced_tool)


def enforceable(tools: tuple[Tool, ...]) -> bool:
    """Whether a grammar can enforce every function's ``parameters``."""
    try:
        check_enforceable(tools, None)
    except RequestError:
        return False
    return True


def check_enforceable(tools: tuple[Tool, ...], forced: str | None) -> None:
    """Refuse a function whose ``parameters`` a grammar cannot enforce where a call must
    follow them: a required or named call is shaped by one, and so, with ``auto``, is a call
    the model begins, if every function's schema can be enforced (``strict`` asks for that)."""
    for i, tool in enumerate(tools):
        if forced is None or tool.name == forced:
            check(tool.parameters, f"tools[{i}].function.parameters", param="tools")


def parse_calls(index: int, calls: list[Any] | None) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls`` (OpenAI's shape), with arguments that are a JSON
    object, as the chat template renders them."""
    out = []
    for j, call in enumerate(calls or []):
        where = f"messages[{index}].tool_calls[{j}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or call.get("type", "function") != "function":
            raise RequestError(f"{where}: a call must be {{\"type\": \"function\", "
                               "\"id\", \"function\": {\"name\", \"arguments\"}}",
                               param="messages")
        name, arguments = function.get("name"), function.get("arguments", "{}")
        try:
            valid = isinstance(json.loads(arguments), dict) if isinstance(arguments, str) else 0
        except ValueError:
            valid = False
        if not isinstance(name, str) or not valid:
            raise RequestError(f"{where}.function: name must be text and arguments a JSON "
                               "object as text", param="messages")
        out.append(ToolCall(str(call.get("id") or f"call_{index}_{j}"), name, arguments))
    return tuple(out)


def _check_refs(schema: Any, where: str, names: set[str]) -> None:
    """Only references to the schema's own ``$defs``/``definitions`` (``names``), which are
    renamed when several functions' schemas are joined into one grammar."""
    if isinstance(schema, list):
        for i, sub in enumerate(schema):
            _check_refs(sub, f"{where}[{i}]", names)
    elif isinstance(schema, Mapping):
        ref = schema.get("$ref")
        if ref is not None:
            target = next((ref[len(root):] for root in ("#/$defs/", "#/definitions/")
                           if isinstance(ref, str) and ref.startswith(root)), None)
            if target is None:
                raise RequestError(f"{where}.$ref: only \"#/$defs/…\" references are "
                                   "supported", code="unsupported_parameter", param="tools")
            if target not in names:
                raise RequestError(f"{where}.$ref: {ref!r} refers to no definition",
                                   param="tools")
        for key, sub in schema.items():
            if key != "$ref":
                _check_refs(sub, f"{where}.{key}", names)


def _def_names(schema: Any) -> set[str]:
    """The names of every ``$defs``/``definitions`` entry in ``schema``, at any depth."""
    if isinstance(schema, list):
        return set().union(*(_def_names(s) for s in schema))
    if not isinstance(schema, Mapping):
        return set()
    names: set[str] = set()
    for key, sub in schema.items():
        if key in ("$defs", "definitions") and isinstance(sub, Mapping):
            names |= set(sub)
        names |= _def_names(sub)
    return names
