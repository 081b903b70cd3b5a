"""Writing whole conversations: their own fields, deletion, and conversations imported whole.

Each function runs inside a write transaction its caller,
:class:`~assistant.store.repository.Store`, has begun.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from assistant.errors import MalformedImport
from assistant.store.queries import C, M, message_values, not_found
from assistant.store.records import Conversation, ImportResult


def set_conversation_fields(conn: Connection, conversation_id: str, owner: int,
                            **values: Any) -> None:
    result = conn.execute(update(C).where(C.c.id == conversation_id, C.c.owner == owner)
                          .values(**values))
    if result.rowcount == 0:
        raise not_found("conversation", conversation_id)


def delete_conversation(conn: Connection, conversation_id: str, owner: int) -> None:
    mine = (C.c.id == conversation_id) & (C.c.owner == owner)
    # Children before parents: the tree's own foreign key must never dangle.
    conn.execute(update(C).where(mine).values(active_leaf_id=None))
    result = conn.execute(delete(C).where(mine))
    if result.rowcount == 0:
        raise not_found("conversation", conversation_id)


def import_conversations(conn: Connection, conversations: Iterable[Conversation],
                         owner: int) -> ImportResult:
    """Store each conversation as it is, ids included, as ``owner``'s; those already stored
    (by anyone: ids are unique) are skipped."""
    imported, skipped = [], []
    for conv in conversations:
        if conn.execute(select(C.c.id).where(C.c.id == conv.id)).first():
            skipped.append(conv.id)
            continue
        ids = [m.id for m in conv.messages]
        for start in range(0, len(ids), 500):
            clash = conn.execute(
                select(M.c.id, M.c.conversation_id, C.c.owner)
                .join(C, C.c.id == M.c.conversation_id)
                .where(M.c.id.in_(ids[start:start + 500]))
            ).first()
            if clash is not None:
                # Another owner's conversation is not named: its id is not the importer's.
                where = (f"in conversation {clash.conversation_id}" if clash.owner == owner
                         else "in a conversation that is not yours")
                raise MalformedImport(
                    f"Import failed: message {clash.id} of conversation {conv.id} is "
                    f"already stored {where}. Nothing was imported."
                )
        conn.execute(insert(C).values(
            id=conv.id, title=conv.title, created=conv.created, updated=conv.updated,
            archived=conv.archived, pinned=conv.pinned, model=conv.model,
            settings=conv.settings, active_leaf_id=conv.active_leaf_id, owner=owner,
        ))
        if conv.messages:
            conn.execute(insert(M), [message_values(m) for m in conv.messages])
        imported.append(conv.id)
    return ImportResult(tuple(imported), tuple(skipped))
