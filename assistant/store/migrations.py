"""The schema's history: an explicit, append-only list of migrations, applied in order on open.

Never edit a migration that has shipped; add the next one. Each runs in its own write
transaction (``BEGIN IMMEDIATE`` on SQLite, the writers' advisory lock on PostgreSQL, see
:mod:`.db`) together with the row recording it in ``schema_version``, so two processes opening
the same database at once apply it exactly once, and a failure leaves the database at the
previous version. SQLite and PostgreSQL are the databases the store runs on; each migration says
what is common to both and what is each one's own. The full-text parts are SQLite's FTS5 tables
and PostgreSQL's generated ``tsvector`` columns with GIN indexes (migration 6).

PostgreSQL ran none of these before migration 6 existed (its DDL of version 1 said ``BLOB``,
which it has no type for), so its part of migration 1 was written then, with PostgreSQL's types.

A migration that rebuilds ``messages`` or ``chunks`` (as 2 does) must drop and recreate their
FTS triggers, both sets (``*_fts_*`` and, since 4, ``*_cjk_*``), and since 4 also the views
``messages_cjk_text`` and ``chunks_cjk_text``, which a rename would repoint at the old table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, text

from assistant.errors import StorageError
from assistant.store import db
from assistant.store.schema import format_time


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str = ""  # every database
    sqlite_sql: str = ""  # SQLite only (FTS5, table rebuilds)
    postgresql_sql: str = ""  # PostgreSQL only (its types, tsvector columns)


DIALECTS = ("sqlite", "postgresql")


_V1_TABLES = """
        CREATE TABLE conversations (
            id VARCHAR(64) PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            created VARCHAR(27) NOT NULL,
            updated VARCHAR(27) NOT NULL,
            archived BOOLEAN NOT NULL DEFAULT FALSE,
            pinned BOOLEAN NOT NULL DEFAULT FALSE,
            model TEXT,
            settings TEXT,
            active_leaf_id VARCHAR(64)
        );
        CREATE INDEX ix_conversations_updated ON conversations (updated);
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY,
            id VARCHAR(64) NOT NULL UNIQUE,
            conversation_id VARCHAR(64) NOT NULL
                REFERENCES conversations (id) ON DELETE CASCADE,
            parent_id VARCHAR(64) REFERENCES messages (id) ON DELETE CASCADE,
            role VARCHAR(16) NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
            content TEXT NOT NULL DEFAULT '',
            status VARCHAR(16) NOT NULL
                CHECK (status IN ('streaming', 'complete', 'cancelled', 'error', 'incomplete')),
            skill TEXT,
            route TEXT,
            model TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            timings TEXT,
            created VARCHAR(27) NOT NULL
        );
        CREATE INDEX ix_messages_conversation ON messages (conversation_id, created);
        CREATE INDEX ix_messages_parent ON messages (parent_id, skill);
        CREATE INDEX ix_messages_status ON messages (status);
        CREATE TABLE documents (
            id VARCHAR(64) PRIMARY KEY,
            path TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            sha256 VARCHAR(64) NOT NULL,
            added VARCHAR(27) NOT NULL
        );
        CREATE UNIQUE INDEX ix_documents_sha256 ON documents (sha256);
        CREATE TABLE chunks (
            seq INTEGER PRIMARY KEY,
            document_id VARCHAR(64) NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            location TEXT,
            text TEXT NOT NULL,
            embedding BLOB
        );
        CREATE INDEX ix_chunks_document ON chunks (document_id, position);
        """
_V1_FTS = """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='seq',
            tokenize='unicode61 remove_diacritics 2', prefix='2 3'
        );
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
                VALUES ('delete', old.seq, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
                VALUES ('delete', old.seq, old.content);
            INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
        END;
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, content='chunks', content_rowid='seq',
            tokenize='unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts (rowid, text) VALUES (new.seq, new.text);
        END;
        CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text);
        END;
        CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN
            INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text);
            INSERT INTO chunks_fts (rowid, text) VALUES (new.seq, new.text);
        END;
        """

# The same tables with PostgreSQL's types: an identity column for ``seq`` (SQLite's INTEGER
# PRIMARY KEY is its rowid), BYTEA for the embedding, the checks named as migration 2 finds them.
_V1_POSTGRESQL = """
CREATE TABLE conversations (
    id VARCHAR(64) PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    created VARCHAR(27) NOT NULL,
    updated VARCHAR(27) NOT NULL,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    pinned BOOLEAN NOT NULL DEFAULT FALSE,
    model TEXT,
    settings TEXT,
    active_leaf_id VARCHAR(64)
);
CREATE INDEX ix_conversations_updated ON conversations (updated);
CREATE TABLE messages (
    seq INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id VARCHAR(64) NOT NULL UNIQUE,
    conversation_id VARCHAR(64) NOT NULL
        REFERENCES conversations (id) ON DELETE CASCADE,
    parent_id VARCHAR(64) REFERENCES messages (id) ON DELETE CASCADE,
    role VARCHAR(16) NOT NULL
        CONSTRAINT messages_role_check CHECK (role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL DEFAULT '',
    status VARCHAR(16) NOT NULL CONSTRAINT messages_status_check
        CHECK (status IN ('streaming', 'complete', 'cancelled', 'error', 'incomplete')),
    skill TEXT,
    route TEXT,
    model TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    timings TEXT,
    created VARCHAR(27) NOT NULL
);
CREATE INDEX ix_messages_conversation ON messages (conversation_id, created);
CREATE INDEX ix_messages_parent ON messages (parent_id, skill);
CREATE INDEX ix_messages_status ON messages (status);
CREATE TABLE documents (
    id VARCHAR(64) PRIMARY KEY,
    path TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    sha256 VARCHAR(64) NOT NULL,
    added VARCHAR(27) NOT NULL
);
CREATE UNIQUE INDEX ix_documents_sha256 ON documents (sha256);
CREATE TABLE chunks (
    seq INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    document_id VARCHAR(64) NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    location TEXT,
    text TEXT NOT NULL,
    embedding BYTEA
);
CREATE INDEX ix_chunks_document ON chunks (document_id, position);
"""

# The text search configuration of a document's language (ISO 639-1, as
# assistant.text.detect_language names it): PostgreSQL's Snowball stemmer for it, else
# 'simple' (no stemming, no stop words: what FTS5's unicode61 does for every language). Each
# configuration is a regconfig constant, resolved when the function is made, so the function
# is truly immutable and may compute a stored column.
_TS_CONFIGS = {
    "ar": "arabic", "da": "danish", "de": "german", "el": "greek", "en": "english",
    "es": "spanish", "fi": "finnish", "fr": "french", "hi": "hindi", "hu": "hungarian",
    "id": "indonesian", "it": "italian", "nb": "norwegian", "nl": "dutch", "pt": "portuguese",
    "ro": "romanian", "ru": "russian", "sv": "swedish", "tr": "turkish",
}
_TS_CONFIG_CASES = "\n".join(f"        WHEN '{code}' THEN 'pg_catalog.{name}'::regconfig"
                             for code, name in _TS_CONFIGS.items())

# Han, kana and Hangul as migration 4 indexed them (assistant.store.cjk.RANGES then): frozen
# here, since a migration never changes; a test checks that the two still agree.
_CJK_V4 = ("[\u3005-\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
           "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff]")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "conversations, message tree, documents and chunks",
        # External-content FTS5 tables: the text lives once, in messages/chunks; triggers keep
        # the index in step with every insert, update and delete (cascades included).
        sqlite_sql=_V1_TABLES + _V1_FTS,
        postgresql_sql=_V1_POSTGRESQL,
    ),
    Migration(
        2,
        "compaction summaries: role 'summary', status 'undone'",
        # PostgreSQL names the v1 checks; swap them in place.
        postgresql_sql="""
        ALTER TABLE messages DROP CONSTRAINT messages_role_check;
        ALTER TABLE messages DROP CONSTRAINT messages_status_check;
        ALTER TABLE messages ADD CONSTRAINT messages_role_check
            CHECK (role IN ('user', 'assistant', 'system', 'summary'));
        ALTER TABLE messages ADD CONSTRAINT messages_status_check
            CHECK (status IN ('streaming', 'complete', 'cancelled', 'error', 'incomplete',
                              'undone'));
        """,
        # SQLite cannot change a CHECK: rebuild the table inside the migration's transaction,
        # where foreign keys cannot be switched off. The old table is renamed first (SQLite
        # repoints the self-reference at it), its FTS triggers dropped before it goes (so the
        # index, keyed by seq, stays as it is), and the rows copied with their seq.
        sqlite_sql="""
        DROP TRIGGER messages_fts_insert;
        DROP TRIGGER messages_fts_delete;
        DROP TRIGGER messages_fts_update;
        ALTER TABLE messages RENAME TO messages_v1;
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY,
            id VARCHAR(64) NOT NULL UNIQUE,
            conversation_id VARCHAR(64) NOT NULL
                REFERENCES conversations (id) ON DELETE CASCADE,
            parent_id VARCHAR(64) REFERENCES messages (id) ON DELETE CASCADE,
            role VARCHAR(16) NOT NULL
                CHECK (role IN ('user', 'assistant', 'system', 'summary')),
            content TEXT NOT NULL DEFAULT '',
            status VARCHAR(16) NOT NULL
                CHECK (status IN ('streaming', 'complete', 'cancelled', 'error', 'incomplete',
                                  'undone')),
            skill TEXT,
            route TEXT,
            model TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            timings TEXT,
            created VARCHAR(27) NOT NULL
        );
        INSERT INTO messages SELECT * FROM messages_v1 ORDER BY seq;
        DROP TABLE messages_v1;
        CREATE INDEX ix_messages_conversation ON messages (conversation_id, created);
        CREATE INDEX ix_messages_parent ON messages (parent_id, skill);
        CREATE INDEX ix_messages_status ON messages (status);
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
                VALUES ('delete', old.seq, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
                VALUES ('delete', old.seq, old.content);
            INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
        END;
        """,
    ),
    Migration(
        3,
        "documents.chunker_version (the chunker that cut the chunks), an index on path",
        # Rows stored before this get 0, which no chunker has: adding their files again chunks
        # and embeds them anew (see assistant.documents.chunking.CHUNKER_VERSION). Ingestion
        # looks a file up by its path.
        """
        ALTER TABLE documents ADD COLUMN chunker_version INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX ix_documents_path ON documents (path);
        """,
    ),
    Migration(
        4,
        "trigram indexes of the messages and chunks holding Chinese, Japanese or Korean text",
        # unicode61 keeps a run of Han or kana as one token; a trigram index finds substrings
        # of it (see assistant.store.cjk). Only rows with such text are indexed: the index is
        # about four times the text it holds. Each table's external content is a view of
        # those rows, so 'rebuild' and 'integrity-check' see exactly what the triggers keep;
        # each trigger does its delete before its insert, in one body.
        sqlite_sql=f"""
        CREATE VIEW messages_cjk_text AS
            SELECT seq, content FROM messages WHERE content GLOB '*{_CJK_V4}*';
        CREATE VIRTUAL TABLE messages_cjk USING fts5(
            content, content='messages_cjk_text', content_rowid='seq', tokenize='trigram'
        );
        CREATE TRIGGER messages_cjk_insert AFTER INSERT ON messages
        WHEN new.content GLOB '*{_CJK_V4}*' BEGIN
            INSERT INTO messages_cjk (rowid, content) VALUES (new.seq, new.content);
        END;
        CREATE TRIGGER messages_cjk_delete AFTER DELETE ON messages
        WHEN old.content GLOB '*{_CJK_V4}*' BEGIN
            INSERT INTO messages_cjk (messages_cjk, rowid, content)
                VALUES ('delete', old.seq, old.content);
        END;
        CREATE TRIGGER messages_cjk_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_cjk (messages_cjk, rowid, content)
                SELECT 'delete', old.seq, old.content WHERE old.content GLOB '*{_CJK_V4}*';
            INSERT INTO messages_cjk (rowid, content)
                SELECT new.seq, new.content WHERE new.content GLOB '*{_CJK_V4}*';
        END;
        INSERT INTO messages_cjk (messages_cjk) VALUES ('rebuild');
        CREATE VIEW chunks_cjk_text AS
            SELECT seq, text FROM chunks WHERE text GLOB '*{_CJK_V4}*';
        CREATE VIRTUAL TABLE chunks_cjk USING fts5(
            text, content='chunks_cjk_text', content_rowid='seq', tokenize='trigram'
        );
        CREATE TRIGGER chunks_cjk_insert AFTER INSERT ON chunks
        WHEN new.text GLOB '*{_CJK_V4}*' BEGIN
            INSERT INTO chunks_cjk (rowid, text) VALUES (new.seq, new.text);
        END;
        CREATE TRIGGER chunks_cjk_delete AFTER DELETE ON chunks
        WHEN old.text GLOB '*{_CJK_V4}*' BEGIN
            INSERT INTO chunks_cjk (chunks_cjk, rowid, text) VALUES ('delete', old.seq, old.text);
        END;
        CREATE TRIGGER chunks_cjk_update AFTER UPDATE OF text ON chunks BEGIN
            INSERT INTO chunks_cjk (chunks_cjk, rowid, text)
                SELECT 'delete', old.seq, old.text WHERE old.text GLOB '*{_CJK_V4}*';
            INSERT INTO chunks_cjk (rowid, text)
                SELECT new.seq, new.text WHERE new.text GLOB '*{_CJK_V4}*';
        END;
        INSERT INTO chunks_cjk (chunks_cjk) VALUES ('rebuild');
        """,
    ),
    Migration(
        5,
        "messages.confidence (from the reply's token log-probabilities) and messages.citations",
        # Added columns, no rebuild: the FTS triggers and views are untouched.
        """
        ALTER TABLE messages ADD COLUMN confidence REAL;
        ALTER TABLE messages ADD COLUMN citations TEXT;
        """,
    ),
    Migration(
        6,
        "documents' and chunks' language; PostgreSQL's full-text search (tsvector, GIN)",
        # A document's language picks its chunks' text search configuration on PostgreSQL
        # (FTS5 ignores it). Documents stored before have none: 'simple'.
        """
        ALTER TABLE documents ADD COLUMN language VARCHAR(16);
        ALTER TABLE chunks ADD COLUMN language VARCHAR(16);
        """,
        # Stored generated tsvector columns, GIN-indexed: the text is folded as FTS5's
        # remove_diacritics folds it (NFD, combining marks dropped; PostgreSQL's unaccent is
        # an extension a server may lack). Messages have no language: 'simple', as FTS5 does.
        postgresql_sql=f"""
        CREATE FUNCTION assistant_fold(value TEXT) RETURNS TEXT
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            RETURN regexp_replace(normalize(value, NFD), '[\\u0300-\\u036f]', '', 'g');
        CREATE FUNCTION assistant_ts_config(language TEXT) RETURNS regconfig
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            RETURN CASE language
{_TS_CONFIG_CASES}
                ELSE 'pg_catalog.simple'::regconfig END;
        ALTER TABLE messages ADD COLUMN tsv tsvector GENERATED ALWAYS AS
            (to_tsvector('pg_catalog.simple'::regconfig, assistant_fold(content))) STORED;
        CREATE INDEX ix_messages_tsv ON messages USING gin (tsv);
        ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS
            (to_tsvector(assistant_ts_config(language), assistant_fold(text))) STORED;
        CREATE INDEX ix_chunks_tsv ON chunks USING gin (tsv);
        CREATE INDEX ix_documents_language ON documents (language);
        """,
    ),
    Migration(
        7,
        "users (their tokens hashed) and the owner of each conversation and document",
        # Owner 0 is the daemon's owner (the runtime token, the Unix socket): every row stored
        # before is theirs, as it was. A user's id starts at 1 and is never reused (users are
        # revoked, not deleted), so a name added again never inherits a revoked user's data.
        # A name is unique among the users not revoked. Two owners may hold the same file, so
        # a document's content hash is unique per owner.
        """
        ALTER TABLE conversations ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX ix_conversations_owner ON conversations (owner, updated);
        ALTER TABLE documents ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;
        DROP INDEX ix_documents_sha256;
        CREATE UNIQUE INDEX ix_documents_owner_sha256 ON documents (owner, sha256);
        CREATE INDEX ix_documents_owner_path ON documents (owner, path);
        """,
        sqlite_sql="""
        CREATE TABLE users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name VARCHAR(64) NOT NULL,
            token_hash VARCHAR(64) NOT NULL UNIQUE,
            created VARCHAR(27) NOT NULL,
            revoked VARCHAR(27)
        );
        CREATE UNIQUE INDEX ix_users_name ON users (name) WHERE revoked IS NULL;
        """,
        postgresql_sql="""
        CREATE TABLE users (
            id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name VARCHAR(64) NOT NULL,
            token_hash VARCHAR(64) NOT NULL UNIQUE,
            created VARCHAR(27) NOT NULL,
            revoked VARCHAR(27)
        );
        CREATE UNIQUE INDEX ix_users_name ON users (name) WHERE revoked IS NULL;
        """,
    ),
)

LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied VARCHAR(27) NOT NULL
)
"""


def current_version(engine: Engine) -> int:
    # A writer: two processes creating the table at once would clash on PostgreSQL.
    with db.writer(engine).begin() as conn:
        conn.execute(text(_VERSION_TABLE))
        return int(conn.execute(text("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
                   .scalar_one())


def migrate(engine: Engine) -> list[int]:
    """Bring the database up to :data:`LATEST`; returns the versions applied now."""
    if engine.dialect.name not in DIALECTS:
        raise StorageError(
            f"The conversation store cannot run on {engine.dialect.name}.",
            "Set [store] url to a SQLite or PostgreSQL URL (postgresql+psycopg://…), or "
            "leave it empty for SQLite in the data directory.")
    with db.translated(str(engine.url)):
        found = current_version(engine)
        if found > LATEST:
            raise StorageError(
                f"The conversation database is at schema version {found}, newer than this "
                f"assistant understands ({LATEST}).",
                "Upgrade the assistant, or point it at another data directory.",
            )
        applied = []
        dialect = engine.dialect.name
        for migration in MIGRATIONS:
            if migration.version <= found:
                continue
            with db.writer(engine).begin() as conn:
                done = conn.execute(
                    text("SELECT 1 FROM schema_version WHERE version = :v"),
                    {"v": migration.version},
                ).first()
                if done:  # another process got here first
                    continue
                db.apply_sql(conn, migration.sql)
                db.apply_sql(conn, migration.sqlite_sql if dialect == "sqlite"
                             else migration.postgresql_sql)
                conn.execute(
                    text("INSERT INTO schema_version (version, description, applied) "
                         "VALUES (:v, :d, :t)"),
                    {"v": migration.version, "d": migration.description,
                     "t": format_time(datetime.now(UTC))},
                )
            applied.append(migration.version)
        return applied
