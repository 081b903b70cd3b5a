"""Reading conversations and messages, and turning their rows into :mod:`.records`.

Each function runs on a connection :class:`~assistant.store.repository.Store` has opened; the
row ↔ record mapping here is shared with the writers (:mod:`.turns`, imports).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, exists, func, select
from sqlalchemy.engine import Row

from assistant.errors import RequestError
from assistant.store.records import Conversation, ConversationSummary, Message
from assistant.store.schema import ConversationRow, MessageRow

C = cast(Table, ConversationRow.__table__)
M = cast(Table, MessageRow.__table__)
MESSAGE_COLUMNS = [M.c[name] for name in (
    "id", "conversation_id", "parent_id", "role", "content", "status", "skill", "route",
    "model", "prompt_tokens", "completion_tokens", "timings", "created", "confidence",
    "citations",
)]


def not_found(what: str, ident: str) -> RequestError:
    return RequestError(f"No {what} with id {ident}.", status=404, code="not_found", param="id")


def message_from_row(row: Row[Any]) -> Message:
    return Message(
        id=row.id, conversation_id=row.conversation_id, parent_id=row.parent_id, role=row.role,
        content=row.content, status=row.status, created=row.created, skill=row.skill,
        route=row.route, model=row.model, prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens, timings=row.timings,
        confidence=row.confidence, citations=row.citations,
    )


def message_values(m: Message) -> dict[str, Any]:
    return {
        "id": m.id, "conversation_id": m.conversation_id, "parent_id": m.parent_id,
        "role": m.role, "content": m.content, "status": m.status, "skill": m.skill,
        "route": m.route, "model": m.model, "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens, "timings": m.timings, "created": m.created,
        "confidence": m.confidence, "citations": m.citations,
    }


def parents_first(messages: list[Message]) -> tuple[Message, ...]:
    """Storage order, except that a parent always comes before its children.

    A summary is stored after the messages it is inserted above (:meth:`Store.add_summary`).
    """
    order = {m.id: i for i, m in enumerate(messages)}
    if all(m.parent_id is None or order.get(m.parent_id, -1) < i
           for i, m in enumerate(messages)):
        return tuple(messages)  # the usual case: nothing to move
    children: dict[str | None, list[Message]] = {}
    for m in messages:
        children.setdefault(m.parent_id if m.parent_id in order else None, []).append(m)
    ready = [(order[m.id], m) for m in children.get(None, [])]
    heapq.heapify(ready)
    ordered: list[Message] = []
    while ready:  # the earliest stored of the messages whose parent is already placed
        _, message = heapq.heappop(ready)
        ordered.append(message)
        for child in children.get(message.id, []):
            heapq.heappush(ready, (order[child.id], child))
    return tuple(ordered)


def message(conn: Connection, message_id: str, owner: int) -> Message:
    row = conn.execute(select(*MESSAGE_COLUMNS).join(C, C.c.id == M.c.conversation_id)
                       .where(M.c.id == message_id, C.c.owner == owner)).first()
    if row is None:
        raise not_found("message", message_id)
    return message_from_row(row)


def conversation_ids(conn: Connection, ids: Sequence[str] | None, owner: int) -> list[str]:
    """The ids of those of ``ids`` that exist and are ``owner``'s (all when None), oldest
    first."""
    query = select(C.c.id).where(C.c.owner == owner).order_by(C.c.created, C.c.id)
    if ids is not None:
        query = query.where(C.c.id.in_(list(ids)))
    return [r.id for r in conn.execute(query)]


def conversations(conn: Connection, ids: Sequence[str] | None,
                  owner: int) -> list[Conversation]:
    query = select(C).where(C.c.owner == owner).order_by(C.c.created, C.c.id)
    messages = (select(*MESSAGE_COLUMNS).join(C, C.c.id == M.c.conversation_id)
                .where(C.c.owner == owner).order_by(M.c.seq))
    if ids is not None:
        query = query.where(C.c.id.in_(list(ids)))
        messages = messages.where(M.c.conversation_id.in_(list(ids)))
    rows = conn.execute(query).all()
    by_conversation: dict[str, list[Message]] = {r.id: [] for r in rows}
    for row in conn.execute(messages):
        by_conversation[row.conversation_id].append(message_from_row(row))
    return [
        Conversation(
            id=r.id, title=r.title, created=r.created, updated=r.updated,
            archived=bool(r.archived), pinned=bool(r.pinned), model=r.model,
            settings=r.settings or {}, active_leaf_id=r.active_leaf_id,
            messages=parents_first(by_conversation[r.id]),
        )
        for r in rows
    ]


def list_conversations(
    conn: Connection, *, owner: int, archived: bool | None, pinned: bool | None, skill: str | None,
    since: datetime | None, until: datetime | None, limit: int | None, offset: int,
) -> list[ConversationSummary]:
    count = (select(func.count()).select_from(M).where(M.c.conversation_id == C.c.id)
             .scalar_subquery())
    query = select(C, count.label("message_count")).where(C.c.owner == owner)
    if archived is not None:
        query = query.where(C.c.archived == archived)
    if pinned is not None:
        query = query.where(C.c.pinned == pinned)
    if skill is not None:
        query = query.where(exists().where(M.c.conversation_id == C.c.id,
                                           M.c.skill == skill))
    if since is not None:
        query = query.where(C.c.updated >= since)
    if until is not None:
        query = query.where(C.c.created < until)
    query = query.order_by(C.c.pinned.desc(), C.c.updated.desc(), C.c.id)
    query = query.limit(limit).offset(offset)
    return [
        ConversationSummary(
            id=r.id, title=r.title, created=r.created, updated=r.updated,
            archived=bool(r.archived), pinned=bool(r.pinned), model=r.model,
            message_count=int(r.message_count),
        )
        for r in conn.execute(query).all()
    ]
