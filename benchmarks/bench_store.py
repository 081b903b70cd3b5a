"""Conversation store: overhead per turn and full-text search, against the raw sqlite3 module.

Both sides use the same schema (created by our migrations), the same pragmas (WAL,
synchronous=FULL, so every commit is an fsync) and the same disk, in the same run:

- turn: ``Store.begin_turn`` + ``Store.finalize`` vs the same statements through sqlite3
  (two ``BEGIN IMMEDIATE`` transactions: insert user + assistant message and move the active
  leaf; then finalize the reply and touch the conversation), the two sides taking turns to
  go first. Median per turn. Two commits mean two fsyncs, so on disk the figure is mostly the
  disk's; it is measured again on tmpfs (/dev/shm), where fsync costs nothing, to show the
  store's own cost.
- search: ``Store.search`` (bm25 order, snippet, join for titles) over 100,000 messages vs the
  bare FTS5 query through sqlite3. p95 over mixed common and rare words.
- stress: one writer streaming turns and 8 readers for 30 s; any error (a "database is
  locked" above all) is counted.

``python -m benchmarks.bench_store`` (or ``python -m benchmarks store``). Set
``BENCH_STORE_MESSAGES`` / ``BENCH_STORE_STRESS_SECONDS`` for a quicker run.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from assistant.store import Conversation, Message, Store
from assistant.store.schema import format_time
from assistant.store.search import fts_query
from benchmarks import Row

TURNS = 400
MESSAGES = int(os.environ.get("BENCH_STORE_MESSAGES", "100000"))
QUERIES = 300
STRESS_SECONDS = float(os.environ.get("BENCH_STORE_STRESS_SECONDS", "30"))
REPLY = ("SQLite in WAL mode lets readers continue while a single writer appends to the log; "
         "a checkpoint later copies the pages back. ") * 4


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("busy_timeout = 10000", "journal_mode = WAL", "synchronous = FULL",
                   "foreign_keys = ON"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_turn(directory: Path, where: str = "disk") -> Row:
    store = Store.open(f"sqlite:///{directory / 'turn.sqlite3'}")
    raw_path = directory / "turn_raw.sqlite3"
    Store.open(f"sqlite:///{raw_path}").close()  # same schema, triggers and FTS tables
    raw = _raw(raw_path)
    ours: list[float] = []
    base: list[float] = []
    raw_conversation = uuid.uuid4().hex
    now = format_time(datetime.now(UTC))
    raw.execute("INSERT INTO conversations (id, title, created, updated, archived, pinned) "
                "VALUES (?, 't', ?, ?, 0, 0)", (raw_conversation, now, now))
    state: dict[str, str | None] = {"conversation": None, "leaf": None}

    def ours_turn(question: str) -> None:
        turn = store.begin_turn(state["conversation"], question)
        store.finalize(turn.assistant_message.id, status="complete", content=REPLY,
                       skill="chat", route={"skill": "chat", "method": "fallback"},
                       prompt_tokens=40, completion_tokens=80, timings={"total_ms": 900})
        state["conversation"] = turn.conversation_id

    def raw_turn(question: str) -> None:
        user, reply = uuid.uuid4().hex, uuid.uuid4().hex
        t1, t2 = format_time(datetime.now(UTC)), format_time(datetime.now(UTC))
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("SELECT active_leaf_id FROM conversations WHERE id = ?", (raw_conversation,))
        raw.executemany(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, status, "
            "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(user, raw_conversation, state["leaf"], "user", question, "complete", t1),
             (reply, raw_conversation, user, "assistant", "", "streaming", t2)])
        raw.execute("UPDATE conversations SET active_leaf_id = ?, updated = ? WHERE id = ?",
                    (reply, t2, raw_conversation))
        raw.execute("COMMIT")
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            "UPDATE messages SET status = 'complete', content = ?, skill = 'chat', route = ?, "
            "prompt_tokens = 40, completion_tokens = 80, timings = ? "
            "WHERE id = ? AND status = 'streaming' RETURNING *",
            (REPLY, '{"skill": "chat", "method": "fallback"}', '{"total_ms": 900}', reply),
        ).fetchall()
        raw.execute("UPDATE conversations SET updated = ? WHERE id = ?",
                    (format_time(datetime.now(UTC)), raw_conversation))
        raw.execute("COMMIT")
        state["leaf"] = reply

    for i in range(TURNS):
        question = f"question number {i}: how does the write-ahead log work?"
        # Alternate who goes first, so neither side always follows the other's fsync.
        sides = [(ours_turn, ours), (raw_turn, base)]
        for turn_of, times in sides if i % 2 == 0 else sides[::-1]:
            started = time.perf_counter()
            turn_of(question)
            times.append(time.perf_counter() - started)
    store.close()
    raw.close()
    value, baseline = statistics.median(ours) * 1000, statistics.median(base) * 1000
    return Row(f"store: begin_turn + finalize, median, {where}", value, baseline, "ms",
               "<= 2 ms", value <= 2.0)


def _vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))
                    for _ in range(6000)})
    rng.shuffle(words)  # how common a word is has nothing to do with how it is spelt
    return words


def _populate(store: Store, rng: random.Random, vocabulary: list[str]) -> None:
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]  # Zipf-like, as prose is
    start = datetime(2024, 1, 1, tzinfo=UTC)
    per_conversation = 100
    batch: list[Conversation] = []
    for c in range(MESSAGES // per_conversation):
        conv_id = uuid.uuid4().hex
        messages: list[Message] = []
        parent = None
        for m in range(per_conversation):
            words = rng.choices(vocabulary, weights, k=rng.randint(8, 60))
            message = Message(
                id=uuid.uuid4().hex, conversation_id=conv_id, parent_id=parent,
                role="user" if m % 2 == 0 else "assistant", content=" ".join(words),
                status="complete", created=start + timedelta(minutes=c * 200 + m),
                skill=None if m % 2 == 0 else rng.choice(["chat", "translate", "qa"]),
            )
            messages.append(message)
            parent = message.id
        batch.append(Conversation(
            id=conv_id, title=" ".join(rng.choices(vocabulary[:300], k=4)),
            created=messages[0].created, updated=messages[-1].created,
            active_leaf_id=parent, messages=tuple(messages),
        ))
        if len(batch) == 50:
            store.add_conversations(batch)
            batch = []
    if batch:
        store.add_conversations(batch)


def bench_search(directory: Path) -> Row:
    rng = random.Random(7)
    vocabulary = _vocabulary(rng)
    path = directory / "search.sqlite3"
    store = Store.open(f"sqlite:///{path}")
    _populate(store, rng, vocabulary)
    store.checkpoint()
    # Mixed queries: one common word, one mid-frequency, two words, a rare word, a prefix.
    queries = []
    for i in range(QUERIES):
        kind = i % 5
        if kind == 0:
            queries.append(rng.choice(vocabulary[:20]))
        elif kind == 1:
            queries.append(rng.choice(vocabulary[100:1000]))
        elif kind == 2:
            queries.append(f"{rng.choice(vocabulary[:200])} {rng.choice(vocabulary[:200])}")
        elif kind == 3:
            queries.append(rng.choice(vocabulary[3000:]))
        else:
            queries.append(rng.choice(vocabulary[:500])[:3] + "*")
    raw = _raw(path)
    bare = ("SELECT rowid, snippet(messages_fts, 0, '**', '**', '…', 12), bm25(messages_fts) "
            "FROM messages_fts WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts) LIMIT 20")
    for q in queries[:20]:  # warm both caches alike
        store.search(q)
        raw.execute(bare, (fts_query(q),)).fetchall()
    ours: list[float] = []
    base: list[float] = []
    for q in queries:
        started = time.perf_counter()
        store.search(q, limit=20)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        raw.execute(bare, (fts_query(q),)).fetchall()
        base.append(time.perf_counter() - started)
    raw.close()
    store.close()
    value, baseline = _p(ours, 0.95) * 1000, _p(base, 0.95) * 1000
    return Row(f"store: search over {MESSAGES:,} messages, p95", value, baseline, "ms",
               "<= 50 ms", value <= 50.0)


def stress(directory: Path, seconds: float, readers: int = 8) -> str:
    store = Store.open(f"sqlite:///{directory / 'stress.sqlite3'}")
    stop = time.monotonic() + seconds
    errors: list[str] = []
    counts = {"turns": 0, "reads": 0}
    lock = threading.Lock()

    def writer() -> None:
        conversation = None
        while time.monotonic() < stop:
            try:
                turn = store.begin_turn(conversation, "tell me about locking")
                store.save_partial(turn.assistant_message.id, "WAL lets")
                store.finalize(turn.assistant_message.id, status="complete", content=REPLY)
                conversation = turn.conversation_id if counts["turns"] % 20 else None
                counts["turns"] += 1
            except Exception as exc:
                errors.append(repr(exc))

    def reader() -> None:
        while time.monotonic() < stop:
            try:
                listed = store.list_conversations(limit=5)
                if listed:
                    store.get_conversation(listed[0].id)
                store.search("checkpoint pages", limit=5)
                with lock:
                    counts["reads"] += 1
            except Exception as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    locked = sum("locked" in e for e in errors)
    verdict = "ok" if not errors else "MISSED: " + "; ".join(sorted(set(errors))[:3])
    return (f"store: 1 writer + {readers} readers for {seconds:.0f} s: {counts['turns']} turns, "
            f"{counts['reads']} read rounds, {len(errors)} errors ({locked} 'database is "
            f"locked')  target 0 errors  {verdict}")


def run() -> list[Row | str]:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as d:
        directory = Path(d)
        rows: list[Row | str] = [bench_turn(directory)]
        if Path("/dev/shm").is_dir():
            # tmpfs makes fsync free: what is left is the store's own cost per turn.
            with tempfile.TemporaryDirectory(prefix="bench-store-", dir="/dev/shm") as shm:
                rows.append(bench_turn(Path(shm), "tmpfs (no fsync)"))
        rows.append(bench_search(directory))
        if STRESS_SECONDS > 0:
            rows.append(stress(directory, STRESS_SECONDS))
        return rows


if __name__ == "__main__":
    for row in run():
        print(row if isinstance(row, str) else row.line(), flush=True)
