"""Tool calls in the model host: the prompt that offers functions, the grammar that makes a
call well-formed, and the reader that finds calls in the reply.

The format is the one qwen2.5 is trained on (and Hermes-style models with it): the model
writes ``<tool_call>`` ``{"name": …, "arguments": {…}}`` ``</tool_call>``, one block per call;
a function's result comes back inside ``<tool_response>``. A chat template that knows tools
(it reads the ``tools`` variable, as qwen2.5's does) renders them itself; for any other,
:func:`fallback_messages` writes the offer into the system message and turns the calls and
results of earlier turns into plain text in the same format, so every chat model gets one.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

OPEN = "<tool_call>"
CLOSE = "</tool_call>"

OFFER = (
    "# Tools\n\n"
    "You can call the functions below when they help to answer. Each is described as JSON "
    "inside <tools></tools>:\n<tools>\n{tools}\n</tools>\n\n"
    "To call one, write a JSON object with its name and arguments inside <tool_call></tool_call>, "
    "one block per call:\n<tool_call>\n"
    '{{"name": <function name>, "arguments": <arguments as a JSON object>}}\n</tool_call>'
)


def as_template_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's ``tools`` list, as chat templates take it."""
    return [{"type": "function", "function": {
        "name": t["name"], "description": t.get("description", ""),
        "parameters": t.get("parameters") or {"type": "object", "properties": {}}}}
        for t in tools]


def fallback_messages(messages: list[dict[str, Any]],
                      tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``messages`` for a template that knows no tools: the offer of ``tools`` joins the
    system message, an assistant's calls become ``<tool_call>`` blocks in its text and a
    ``tool`` message a user message of ``<tool_response>`` blocks (consecutive ones merged)."""
    out: list[dict[str, Any]] = []
    if tools:
        offer = OFFER.format(tools="\n".join(
            json.dumps(t, ensure_ascii=False) for t in as_template_tools(tools)))
        if messages and messages[0]["role"] == "system":
            out.append({"role": "system", "content": f"{messages[0]['content']}\n\n{offer}"})
            messages = messages[1:]
        else:
            out.append({"role": "system", "content": offer})
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            blocks = [f"{OPEN}\n{json.dumps(_call_object(c), ensure_ascii=False)}\n{CLOSE}"
                      for c in message["tool_calls"]]
            out.append({"role": "assistant", "content": "\n".join(
                [content, *blocks] if content else blocks)})
        elif role == "tool":
            block = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "tool_results": True})
        else:
            out.append({"role": role, "content": content})
    return [{"role": m["role"], "content": m["content"]} for m in out]


def _call_object(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function", call)
    return {"name": function["name"], "arguments": arguments_object(function["arguments"])}


def arguments_object(arguments: Any) -> Any:
    """A call's ``arguments`` as the object they spell (OpenAI sends JSON text); text that is
    not JSON is left as it is."""
    try:
        return json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return arguments


def call_grammar(tools: list[dict[str, Any]], forced: str | None, parallel: bool) -> str:
    """A llama.cpp grammar for a reply that is only calls: one (``parallel`` false) or more
    ``<tool_call>`` blocks, each naming one of ``tools`` (``forced``: that one) with arguments
    that follow its ``parameters``. Schemas are checked beforehand (in the daemon:
    ``assistant.daemon.openai_tools``); ``$defs`` are gathered at the root, renamed
    per function, so that two functions' definitions cannot clash."""
    from llama_cpp.llama_grammar import SchemaConverter

    defs: dict[str, Any] = {}
    branches = []
    for i, tool in enumerate(tools):
        if forced is not None and tool["name"] != forced:
            continue
        parameters = _hoist(tool.get("parameters") or {"type": "object"}, f"f{i}-", defs)
        branches.append({"type": "object", "properties": {
            "name": {"const": tool["name"]}, "arguments": parameters},
            "required": ["name", "arguments"]})
    schema: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    schema = {**schema, "$defs": defs} if defs else schema
    converter = SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(schema, "")
    call = converter.visit(schema, "call")  # type: ignore[no-untyped-call]
    block = f'"{OPEN}\\n" {call} "\\n{CLOSE}"'
    root = f"root ::= {block}" + (f' ("\\n" {block})*' if parallel else "")
    rules = converter.format_grammar()  # type: ignore[no-untyped-call]
    return f"{rules}\n{root}\n"


def _hoist(schema: Any, prefix: str, defs: dict[str, Any]) -> Any:
    """``schema`` without its ``$defs``/``definitions``, which go into ``defs`` under names
    starting with ``prefix``; its ``$ref``s follow them."""
    if isinstance(schema, list):
        return [_hoist(s, prefix, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                defs[f"{prefix}{name}"] = _hoist(sub, prefix, defs)
        elif key == "$ref" and isinstance(value, str):
            for root in ("#/$defs/", "#/definitions/"):
                if value.startswith(root):
                    value = f"#/$defs/{prefix}{value[len(root):]}"
            out[key] = value
        else:
            out[key] = _hoist(value, prefix, defs)
    return out


class CallReader:
    """Finds ``<tool_call>`` blocks in a reply as it streams: :meth:`feed` takes text and
    gives back the text to show and the calls completed, in order; :meth:`end` the rest.

    A block that is not JSON naming one of the functions offered with object arguments is
    not a call: it stays in the text, as the model wrote it. Small models often write the
    call's JSON without the tags, bare or in a Markdown code block (qwen2.5-coder-0.5b does
    both): a reply that begins with such an object is a call too, and so is each one that
    follows it before any other text. Whitespace around calls is dropped (text that merely
    separates them is not an answer).

    :meth:`starting` tells when a call has begun, so that the rest of it can be sampled under
    a grammar (:meth:`restart`).
    """

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.calls = 0
        self._buffer = ""
        self._inside = False
        self._blank = ""  # trailing whitespace held back: shown only if more text follows
        self._after_call = False
        self._bare = True  # no text yet: an untagged object may still be a call
        self._fence = False  # a call in a code block was read: its closing ``` is next
        self._fed = ""  # all the text given
        self._scan: _ObjectScan | None = None  # the untagged object being read

    def starting(self) -> str | None:
        """The text before a call that has begun but is not complete (None if none has):
        inside ``<tool_call>``, or an untagged object that has begun ``{"name":``."""
        if self._inside:
            return self._fed[: len(self._fed) - len(self._buffer) - len(OPEN)]
        if self._bare:
            start = _bare_start(self._buffer.lstrip())
            if start is not None and CALL_HEAD.match(self._buffer.lstrip()[start:]):
                return self._fed[: len(self._fed) - len(self._buffer)]
        return None

    @property
    def in_call(self) -> bool:
        """Whether the text given last is inside a call (or an untagged object that may be
        one): stop strings do not apply there."""
        return self._inside or self._scan is not None

    def restart(self) -> None:
        """Forget the call begun (:meth:`starting`): the text given next makes it again."""
        self._fed = self._fed[: len(self._fed) - len(self._buffer)
                              - (len(OPEN) if self._inside else 0)]
        self._buffer = ""
        self._inside = False

    def feed(self, text: str) -> Iterator[str | dict[str, str]]:
        self._buffer += text
        self._fed += text
        while True:
            if self._fence:
                head = self._buffer.lstrip()
                if len(head) < 3 and "```".startswith(head):
                    return  # not yet known
                self._fence = False
                if head.startswith("```"):
                    self._buffer = head[3:]
            if self._bare and not self._inside:
                head = self._buffer.lstrip()
                start = _bare_start(head)
                if start is None:
                    if _undecided(head):
                        return
                    self._bare = False
                    continue
                at = len(self._buffer) - len(head) + start
                if self._scan is None or self._scan.at != at:
                    self._scan = _ObjectScan(at)
                end = self._scan.end(head[start:])
                if end is None:
                    return  # wait for the rest of the object
                self._scan = None
                call = self._parse(head[start:start + end])
                if call is None:
                    self._bare = False
                    continue
                self._buffer = head[start + end:]
                self._fence = start > 0
                yield self._made(call)
                continue
            if self._inside:
                end = self._buffer.find(CLOSE)
                if end < 0:
                    return
                body, self._buffer = self._buffer[:end], self._buffer[end + len(CLOSE):]
                self._inside = False
                yield from self._block(body, closed=True)
                continue
            start = self._buffer.find(OPEN)
            if start >= 0:
                yield from self._text(self._buffer[:start])
                self._buffer = self._buffer[start + len(OPEN):]
                self._inside = True
                continue
            keep = _partial_suffix(self._buffer, OPEN)
            cut = len(self._buffer) - keep
            yield from self._text(self._buffer[:cut])
            self._buffer = self._buffer[cut:]
            return

    def end(self) -> Iterator[str | dict[str, str]]:
        """What is left once the reply has ended: a block the model did not close is still a
        call if it is complete JSON (it may stop right after the object)."""
        rest, self._buffer = self._buffer, ""
        if self._fence and rest.strip() in ("", "`", "``"):
            rest = ""  # the code block a call was in, not closed
        if self._inside:
            self._inside = False
            yield from self._block(rest, closed=False)
        else:
            yield from self._text(rest)
        if not self.calls and self._blank:
            yield self._blank
        self._blank = ""

    def _text(self, text: str) -> Iterator[str]:
        body = text.rstrip()
        if not body:
            if not self._after_call:
                self._blank += text
            return
        lead = "" if self._after_call else self._blank
        yield lead + (body.lstrip() if self._after_call else body)
        self._after_call = self._bare = False
        self._blank = text[len(body):]

    def _block(self, body: str, *, closed: bool) -> Iterator[str | dict[str, str]]:
        call = self._parse(body)
        if call is None:
            yield from self._text(OPEN + body + (CLOSE if closed else ""))
            return
        yield self._made(call)

    def _made(self, call: dict[str, str]) -> dict[str, str]:
        self.calls += 1
        self._blank = ""
        self._after_call = True
        return call

    def _parse(self, body: str) -> dict[str, str] | None:
        try:
            value = json.loads(body)
        except ValueError:
            return None
        name = value.get("name") if isinstance(value, dict) else None
        if not isinstance(name, str) or name not in self.names:
            return None
        arguments = value.get("arguments", value.get("parameters", {}))
        if isinstance(arguments, str):  # some models write the arguments as JSON text
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        if not isinstance(arguments, dict):
            return None
        return {"id": f"call_{uuid.uuid4().hex[:24]}", "name": value["name"],
                "arguments": json.dumps(arguments, ensure_ascii=False)}


CALL_HEAD = re.compile(r'\{\s*"name"\s*:')
_FENCE = re.compile(r"```(?:json)?[ \t]*\n\s*")


def _bare_start(head: str) -> int | None:
    """Where the object an untagged call would be begins in ``head`` (stripped): at once, or
    after a code block's opening line; None if ``head`` does not begin so."""
    if head.startswith("{"):
        return 0
    fence = _FENCE.match(head)
    if fence and head[fence.end():].startswith("{"):
        return fence.end()
    return None


def _undecided(head: str) -> bool:
    """Whether ``head`` (stripped), which does not begin an untagged call yet, still may."""
    if not head or _partial_suffix(head, OPEN) == len(head):
        return True
    if not head.startswith("`"):
        return False
    fence = _FENCE.match(head)
    return not head[fence.end():] if fence else "\n" not in head and len(head) < 12


class _ObjectScan:
    """Where a JSON object ends, read as its text grows: each character is looked at once
    (a reply of thousands of tokens must not be scanned again at each one)."""

    def __init__(self, at: int) -> None:
        self.at = at  # where the object begins in the reader's buffer
        self._seen = 0
        self._depth = 0
        self._quoted = self._escaped = False

    def end(self, text: str) -> int | None:
        """Where the object ``text`` begins with ends, or None while it is open; ``text`` is
        the object's text so far, longer at each call."""
        for i in range(self._seen, len(text)):
            char = text[i]
            if self._quoted:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._quoted = False
            elif char == '"':
                self._quoted = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1
        self._seen = len(text)
        return None


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that begins ``marker``."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0
