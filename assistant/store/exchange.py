"""Conversations in and out of the store: our JSON format, Markdown, and ChatGPT's export.

Our JSON is lossless: every field of every message of the tree, ids and timestamps included,
under a ``format``/``version`` header. Parsing validates everything before the store writes
anything, and a problem is reported with the line (bad JSON) or the field path
(``conversations[2].messages[5].status``) where it is: also text that is not text (a lone
surrogate), a number that is not finite or past 64 bits, nesting past :data:`MAX_DEPTH`, and
a time outside years 1 to 9999 once in UTC.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from assistant.errors import MalformedImport
from assistant.json_checks import MAX_INT, first_problem
from assistant.store.records import ROLES, STATUSES, Conversation, Message
from assistant.store.schema import format_time, parse_time

FORMAT_NAME = "assistant-conversations"
FORMAT_VERSION = 1
_CHATGPT_NAMESPACE = uuid.UUID("8f0c4a4e-2c1b-4d64-9b7e-0d7f3f6f1a52")
# Our format nests 4 levels (route and timings a few more), ChatGPT's about 8; the margin is
# for plugins' route data. Past it the JSON encoders that write the value back may recurse out.
MAX_DEPTH = 64
# A day inside datetime's range, so that showing a time in any local zone cannot overflow.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


# -- out ---------------------------------------------------------------------------------------


def message_to_dict(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "parent_id": message.parent_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "skill": message.skill,
        "route": message.route,
        "model": message.model,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "timings": message.timings,
        "confidence": message.confidence,
        "citations": message.citations,
        "created": format_time(message.created),
    }


def conversation_to_dict(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "title": conversation.title,
        "created": format_time(conversation.created),
        "updated": format_time(conversation.updated),
        "archived": conversation.archived,
        "pinned": conversation.pinned,
        "model": conversation.model,
        "settings": conversation.settings,
        "active_leaf_id": conversation.active_leaf_id,
        "messages": [message_to_dict(m) for m in conversation.messages],
    }


def export_header() -> dict[str, Any]:
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION,
            "exported": format_time(datetime.now(UTC))}


def json_chunks(conversations: Iterable[Conversation]) -> Iterator[str]:
    """Our JSON export, one conversation per piece: the text of ``json.dumps`` of the whole
    document with ``indent=2``, without holding it (or every conversation) at once."""
    head = json.dumps(export_header(), ensure_ascii=False, indent=2)
    yield head[:-2] + ',\n  "conversations": ['  # head ends "\n}"
    empty = True
    for conv in conversations:
        text = json.dumps(conversation_to_dict(conv), ensure_ascii=False, indent=2)
        # Strings hold their newlines escaped: each raw one is a line of the layout.
        yield ("\n    " if empty else ",\n    ") + text.replace("\n", "\n    ")
        empty = False
    yield ("]" if empty else "\n  ]") + "\n}\n"


def to_json(conversations: Iterable[Conversation]) -> str:
    return "".join(json_chunks(conversations))


def markdown_chunks(conversations: Iterable[Conversation]) -> Iterator[str]:
    """The active path of each conversation, for reading; other branches are noted, not
    shown. One conversation per piece."""
    for i, conv in enumerate(conversations):
        lines = [f"# {conv.title or 'Untitled'}", ""]
        lines.append(f"*{format_time(conv.created)}* · `{conv.id}`")
        branches = sum(1 for m in conv.messages if len(conv.children(m.id)) > 1)
        if branches:
            lines.append(f"*{branches} point(s) with other branches; the active one is shown.*")
        lines.append("")
        for msg in conv.active_path:
            heading = msg.role.capitalize()
            extra = [x for x in (msg.skill, msg.model) if x]
            if msg.status != "complete":
                extra.append(msg.status)
            if msg.confidence is not None:
                extra.append(f"{round(msg.confidence * 100)} % sure")
            if extra:
                heading += f" ({', '.join(extra)})"
            lines += [f"## {heading}", "", msg.content, ""]
        yield ("\n---\n\n" if i else "") + "\n".join(lines)


def to_markdown(conversations: Iterable[Conversation]) -> str:
    return "".join(markdown_chunks(conversations))


# -- in ----------------------------------------------------------------------------------------


def parse(data: str | bytes, fmt: str = "auto") -> list[Conversation]:
    """Conversations from an import file; MalformedImport names the line or field at fault."""
    try:
        doc = json.loads(data)
    except UnicodeDecodeError as exc:
        raise MalformedImport(f"Import failed: the file is not UTF-8 text ({exc.reason}).") \
            from None
    except json.JSONDecodeError as exc:
        raise MalformedImport(
            f"Import failed: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."
        ) from None
    except RecursionError:
        raise MalformedImport(
            f"Import failed: the JSON is nested too deeply (an import may nest {MAX_DEPTH} "
            "levels). Nothing was imported.") from None
    except ValueError:  # Python reads integers of up to 4,300 digits
        raise MalformedImport(
            "Import failed: invalid JSON: a number has more than 4,300 digits. "
            "Nothing was imported.") from None
    problem = first_problem(doc, max_depth=MAX_DEPTH, numbers=True)
    if problem is not None:
        raise _bad(problem[0] or "(top level)", problem[1])
    if fmt == "auto":
        fmt = detect(doc)
    if fmt == "json":
        return _ours(doc)
    if fmt == "chatgpt":
        return _chatgpt(doc)
    raise MalformedImport(f"Import failed: unknown format {fmt!r}; use auto, json or chatgpt.")


def detect(doc: Any) -> str:
    if isinstance(doc, dict) and doc.get("format") == FORMAT_NAME:
        return "json"
    if isinstance(doc, list) and all(isinstance(c, dict) and "mapping" in c for c in doc):
        return "chatgpt"
    raise MalformedImport(
        "Import failed: not an assistant JSON export (no \"format\": "
        f"\"{FORMAT_NAME}\") nor a ChatGPT conversations.json (a list with \"mapping\")."
    )


class _Fields:
    """Typed access to one JSON object, each failure naming the field's path."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise _bad(where, "must be an object")
        self.obj, self.where = obj, where

    def path(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kinds: tuple[type, ...], optional: bool = False) -> Any:
        if name not in self.obj:
            if optional:
                return None
            raise _bad(self.path(name), "is missing")
        value = self.obj[name]
        if value is None and optional:
            return None
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise _bad(self.path(name), f"must be {names}, not {type(value).__name__}")
        return value

    def text(self, name: str) -> str:
        return str(self.get(name, (str,)))

    def optional_text(self, name: str) -> str | None:
        value = self.get(name, (str,), optional=True)
        return None if value is None else str(value)

    def time(self, name: str) -> datetime:
        raw = self.text(name)
        try:
            moment = parse_time(raw)
        except ValueError:
            raise _bad(self.path(name), f"is not an ISO-8601 timestamp: {raw!r}") from None
        except OverflowError:  # 0001-01-01T00:00+14:00 is in year 0 in UTC
            moment = _EARLIEST - timedelta(days=1)
        if not _EARLIEST <= moment <= _LATEST:
            raise _bad(self.path(name), f"is {raw!r}, outside years 1 to 9999")
        return moment

    def epoch(self, name: str, fallback: datetime) -> datetime:
        """A Unix time (ChatGPT's ``create_time``); ``fallback`` when absent or null."""
        value = self.get(name, (int, float), optional=True)
        if value is None:
            return fallback
        try:
            if not math.isfinite(value):
                raise ValueError
            moment = datetime.fromtimestamp(value, UTC)
            if not _EARLIEST <= moment <= _LATEST:
                raise ValueError
        except (ValueError, OverflowError, OSError):
            raise _bad(self.path(name), f"is {value!r}, not a Unix time in years 1 to 9999") \
                from None
        return moment

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name)
        if value not in allowed:
            raise _bad(self.path(name), f"is {value!r}; expected one of {', '.join(allowed)}")
        return value

    def fraction(self, name: str) -> float | None:
        """An optional number from 0 to 1 (a reply's confidence)."""
        value = self.get(name, (int, float), optional=True)
        if value is None:
            return None
        if not 0 <= value <= 1:  # NaN fails too
            raise _bad(self.path(name), f"must be from 0 to 1, not {value}")
        return float(value)

    def objects(self, name: str) -> list[dict[str, Any]] | None:
        """An optional list of JSON objects (a reply's citations)."""
        value = self.get(name, (list,), optional=True)
        if value is None:
            return None
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise _bad(f"{self.path(name)}[{i}]", f"must be object, not {type(item).__name__}")
        return list(value)

    def count(self, name: str) -> int:
        value = self.get(name, (int,))
        if not 0 <= value <= MAX_INT:
            raise _bad(self.path(name), f"must be from 0 to {MAX_INT}, not {value}")
        return int(value)


def _bad(path: str, problem: str) -> MalformedImport:
    return MalformedImport(f"Import failed: {path} {problem}. Nothing was imported.")


def _ours(doc: Any) -> list[Conversation]:
    top = _Fields(doc, "")
    version = top.get("version", (int,))
    if version > FORMAT_VERSION:
        raise _bad("version", f"is {version}; this assistant reads up to {FORMAT_VERSION}")
    items = top.get("conversations", (list,))
    seen_conversations: set[str] = set()
    seen_messages: set[str] = set()
    result = []
    for i, item in enumerate(items):
        f = _Fields(item, f"conversations[{i}]")
        conv_id = f.text("id")
        if conv_id in seen_conversations:
            raise _bad(f.path("id"), f"repeats conversation {conv_id}")
        seen_conversations.add(conv_id)
        messages: list[Message] = []
        local: set[str] = set()
        for j, raw in enumerate(f.get("messages", (list,))):
            m = _Fields(raw, f"{f.path('messages')}[{j}]")
            message_id = m.text("id")
            if message_id in seen_messages:
                raise _bad(m.path("id"), f"repeats message {message_id}")
            parent_id = m.optional_text("parent_id")
            if parent_id is not None and parent_id not in local:
                raise _bad(m.path("parent_id"),
                           f"names {parent_id}, which is not an earlier message of this "
                           "conversation")
            seen_messages.add(message_id)
            local.add(message_id)
            messages.append(Message(
                id=message_id, conversation_id=conv_id, parent_id=parent_id,
                role=m.choice("role", ROLES), content=m.text("content"),
                status=m.choice("status", STATUSES), created=m.time("created"),
                skill=m.optional_text("skill"), route=m.get("route", (dict,), optional=True),
                model=m.optional_text("model"), prompt_tokens=m.count("prompt_tokens"),
                completion_tokens=m.count("completion_tokens"),
                timings=m.get("timings", (dict,), optional=True),
                confidence=m.fraction("confidence"), citations=m.objects("citations"),
            ))
        leaf = f.optional_text("active_leaf_id")
        if leaf is not None and leaf not in local:
            raise _bad(f.path("active_leaf_id"), f"names {leaf}, not a message of it")
        result.append(Conversation(
            id=conv_id, title=f.text("title"), created=f.time("created"),
            updated=f.time("updated"), archived=bool(f.get("archived", (bool,))),
            pinned=bool(f.get("pinned", (bool,))), model=f.optional_text("model"),
            settings=f.get("settings", (dict,), optional=True) or {},
            active_leaf_id=leaf, messages=tuple(messages),
        ))
    return result


def _chatgpt_text(content: Any) -> str:
    """The text of a message's ``content``: its string ``parts`` (images and other assets are
    objects among them, left out), else its ``text``."""
    if not isinstance(content, dict):
        return ""
    if isinstance(content.get("parts"), list):
        return "\n".join(p for p in content["parts"] if isinstance(p, str)).strip()
    if isinstance(content.get("text"), str):
        return str(content["text"]).strip()
    return ""


def _chatgpt(doc: Any) -> list[Conversation]:
    """ChatGPT's ``mapping`` tree: user and assistant turns kept, system/tool/empty nodes
    skipped with their children re-attached to the nearest kept ancestor."""
    if not isinstance(doc, list):
        raise _bad("(top level)", "must be a list of conversations")
    result = []
    for i, item in enumerate(doc):
        f = _Fields(item, f"[{i}]")
        conv_id = str(f.get("conversation_id", (str,), optional=True) or f.text("id"))
        mapping = f.get("mapping", (dict,))
        created = f.epoch("create_time", datetime.fromtimestamp(0, UTC))
        updated = f.epoch("update_time", created)
        title = f.optional_text("title") or ""
        archived = bool(f.get("is_archived", (bool,), optional=True))
        model = f.optional_text("default_model_slug")
        current = f.optional_text("current_node")
        nodes: dict[str, tuple[str | None, list[str], Message | None]] = {}
        for node_id, node in mapping.items():
            nodes[node_id] = _chatgpt_node(
                _Fields(node, f"{f.path('mapping')}.{node_id}"), conv_id, node_id, created)
        kept: dict[str, str | None] = {}  # node id → our id of it or its nearest kept ancestor
        messages: list[Message] = []
        roots = [n for n, (parent, _, _) in nodes.items() if parent not in nodes]
        stack = list(reversed(roots))
        visited: set[str] = set()
        while stack:
            node_id = stack.pop()
            if node_id in visited:  # a malformed mapping may loop
                continue
            visited.add(node_id)
            parent_node, children, message = nodes[node_id]
            parent = kept.get(parent_node) if parent_node else None
            if message is not None:
                message = dataclasses.replace(message, parent_id=parent)
                messages.append(message)
                kept[node_id] = message.id
            else:
                kept[node_id] = parent
            stack.extend(reversed([c for c in children if c in nodes]))
        leaf = kept.get(current) if current is not None else None
        if leaf is None and messages:
            leaf = messages[-1].id
        result.append(Conversation(
            id=conv_id, title=title, created=created, updated=updated, archived=archived,
            model=model, active_leaf_id=leaf, messages=tuple(messages),
        ))
    return result


def _chatgpt_node(
    nf: _Fields, conv_id: str, node_id: str, created: datetime,
) -> tuple[str | None, list[str], Message | None]:
    """A node's parent, children and, when it is a user or assistant turn with text, its
    message (parent filled in later)."""
    children = nf.get("children", (list,), optional=True) or []
    for k, child in enumerate(children):
        if not isinstance(child, str):
            raise _bad(f"{nf.path('children')}[{k}]",
                       f"must be a node id (a string), not {type(child).__name__}")
    parent = nf.optional_text("parent")
    raw = nf.get("message", (dict,), optional=True)
    if raw is None:
        return parent, children, None
    mf = _Fields(raw, nf.path("message"))
    role = _Fields(mf.get("author", (dict,)), mf.path("author")).optional_text("role")
    text = _chatgpt_text(raw.get("content"))
    if role not in ("user", "assistant") or not text:
        return parent, children, None
    metadata = mf.get("metadata", (dict,), optional=True) or {}
    slug = _Fields(metadata, mf.path("metadata")).optional_text("model_slug")
    return parent, children, Message(
        id=uuid.uuid5(_CHATGPT_NAMESPACE, f"{conv_id}/{node_id}").hex,
        conversation_id=conv_id, parent_id=None, role=role, content=text,
        status="incomplete" if raw.get("status") == "in_progress" else "complete",
        created=mf.epoch("create_time", created),
        model=slug if role == "assistant" else None,
    )
