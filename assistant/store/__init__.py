"""The conversation store. :class:`Store` is the only way in; nothing here touches disk on import.

    db.py             engine, connection settings (WAL, synchronous=FULL…; PostgreSQL's
                      writers' lock), error translation
    schema.py         ORM rows (internal)
    migrations.py     the schema's versioned history, applied on open
    records.py        the dataclasses the store hands out
    repository.py     Store: connections, transactions, errors, clock; the API below runs
                      through the next four modules
    turns.py          writing the message tree: turns, replies, branches, summaries
    conversations.py  writing whole conversations: title, archive, pin, delete, import
    queries.py        reading conversations and messages; rows to records
    search.py         full-text search (FTS5), its caps and time budget
    postgres_search.py  the same on PostgreSQL (tsvector), for messages and documents
    exchange.py       our JSON format, Markdown, ChatGPT's conversations.json
    documents.py      the user's documents and their chunks (``Store.documents``)
"""

from __future__ import annotations

from assistant.errors import MalformedImport
from assistant.store.records import (
    Conversation,
    ConversationSummary,
    ImportResult,
    Message,
    SearchHit,
    Turn,
)
from assistant.store.repository import Store

__all__ = [
    "Conversation",
    "ConversationSummary",
    "ImportResult",
    "MalformedImport",
    "Message",
    "SearchHit",
    "Store",
    "Turn",
]
