"""Saved KV states of one chat model, found by token prefix. Runs inside the model host.

When the host turns from one conversation to another it saves the outgoing sequence's KV
state (``llama_state_seq_get_data``: the sequence alone, not the context buffer and logits)
and, on return, restores the saved state whose tokens share the longest prefix with the new
prompt; only the tokens after that prefix are evaluated. States live in RAM under a budget,
least recently used out first, and are written to disk so that a restarted daemon finds them.

An entry's key is the exact token prefix it holds, inside a directory named after everything
else that shapes a state (model file, context size, batch size, chat template, llama.cpp
version, parallel sequences, attention); any mismatch means no entry matches, and the prompt is
evaluated from scratch — never a wrong reuse. A state file carries a CRC-32 of its state: a
damaged one is forgotten, not used. A directory no settings can reach again is removed when its
model loads, once unwritten for a day (:func:`claim`), so that old settings do not keep their
budgets of disk for ever.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import struct
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from assistant.errors import UnsafePath
from assistant.locations import open_own

# Then token count, state size, CRC-32 of the state, tag length; the tag; tokens; state.
_MAGIC = b"ASKV3\n"


@dataclass
class Entry:
    tokens: np.ndarray  # int32, the prefix this state holds
    data: memoryview | None  # the state in RAM, or None when it is only on disk
    path: Path | None
    size: int
    tag: str = ""  # the conversation it belongs to, when the daemon said; forget() goes by it


def _key(tokens: np.ndarray) -> str:
    """The key of the state of ``tokens`` (int32): its entry's, and its file's name."""
    return hashlib.sha256(tokens.tobytes()).hexdigest()[:32]


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.nonzero(a[:n] != b[:n])[0]
    return int(diff[0]) if len(diff) else n


def scope_key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


class StateCache:
    def __init__(self, directory: Path | None, ram_budget: int, disk_budget: int) -> None:
        self.directory = directory
        self.ram_budget = ram_budget
        self.disk_budget = disk_budget
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        if directory is not None:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._read_index()

    # -- finding and storing -----------------------------------------------------------------

    def best(self, tokens: np.ndarray) -> tuple[Entry | None, int]:
        """The entry sharing the longest prefix with ``tokens``, and that prefix's length."""
        found, length = None, 0
        for entry in self.entries.values():
            # A state may run past the shared prefix (the reply it ended with, say): the
            # caller restores it whole and the tail past the prefix is dropped before decoding.
            n = common_prefix(entry.tokens, tokens)
            if n > length:
                found, length = entry, n
        return found, length

    def in_ram(self, tokens: np.ndarray) -> bool:
        """Whether the state of exactly ``tokens`` is kept in RAM."""
        entry = self.entries.get(_key(tokens))
        return entry is not None and entry.data is not None

    def put(self, tokens: np.ndarray, data: bytes | memoryview, tag: str = "") -> None:
        """Keep ``data``, the state of ``tokens``: copied (the caller may reuse its buffer),
        in RAM when the budget holds it, and on disk."""
        key = _key(tokens)
        size = memoryview(data).nbytes
        # numpy copies without the GIL: the host's other threads go on meanwhile.
        kept = memoryview(np.frombuffer(data, dtype=np.uint8).copy().data) \
            if size <= self.ram_budget else None
        entry = Entry(tokens.copy(), kept, None, size, tag)
        # Added before its ancestors go: stats() runs on another thread and must never see
        # the conversation missing.
        self.entries[key] = entry
        self.entries.move_to_end(key)
        # A longer state of the same conversation makes its shorter ancestors redundant. One
        # of another conversation stays: deleting that conversation must find it by its tag.
        for old_key, old in list(self.entries.items()):
            if old_key != key and old.tag == tag and len(old.tokens) <= len(tokens) and \
                    common_prefix(old.tokens, tokens) == len(old.tokens):
                self._drop(old_key)
        if self.directory is not None:
            self._spill(key, entry, data)
        if entry.data is None and entry.path is None:  # held nowhere
            self.entries.pop(key, None)
        self._trim_ram()

    def load(self, entry: Entry) -> memoryview | None:
        if entry.data is not None:
            return entry.data
        if entry.path is None:
            return None
        try:
            tokens, data = _decode(entry.path.read_bytes())
        except (OSError, ValueError, struct.error):
            tokens, data = np.empty(0, dtype=np.int32), memoryview(b"")
        if not data or not np.array_equal(tokens, entry.tokens):
            self._forget(entry)  # unreadable or not what the index said: never use it
            return None
        return data

    def forget(self, tag: str) -> int:
        """Drop every state of conversation ``tag``, from RAM and disk; how many went."""
        keys = [k for k, e in self.entries.items() if tag and e.tag == tag]
        for key in keys:
            self._drop(key)
        return len(keys)

    def _forget(self, entry: Entry) -> None:
        for key, value in list(self.entries.items()):
            if value is entry:
                self._drop(key)

    def touch(self, entry: Entry) -> None:
        for key, value in self.entries.items():
            if value is entry:
                self.entries.move_to_end(key)
                return

    def stats(self) -> dict[str, int]:
        # Read from the host's reader thread while the chat worker may be changing entries:
        # list() copies the values in one step under the GIL.
        entries = list(self.entries.values())
        return {
            "entries": len(entries),
            "ram_bytes": sum(e.size for e in entries if e.data is not None),
            "disk_bytes": sum(e.size for e in entries if e.path is not None),
            "hits": self.hits, "misses": self.misses, "evictions": self.evictions,
        }

    # -- budgets -----------------------------------------------------------------------------

    def _trim_ram(self) -> None:
        in_ram = [k for k, e in self.entries.items() if e.data is not None]
        used = sum(self.entries[k].size for k in in_ram)
        for key in in_ram:  # oldest first
            if used <= self.ram_budget:
                break
            entry = self.entries[key]
            used -= entry.size
            self.evictions += 1
            if entry.path is None:
                del self.entries[key]  # no copy on disk: gone
            else:
                entry.data = None  # still on disk

    def _drop(self, key: str) -> None:
        entry = self.entries.pop(key)
        if entry.path is not None:
            with contextlib.suppress(OSError):
                entry.path.unlink()

    # -- disk --------------------------------------------------------------------------------

    def _spill(self, key: str, entry: Entry, data: bytes | memoryview) -> None:
        # Page-cache speed; the state is written from the caller's buffer, not joined to its
        # head first (a copy of tens of megabytes).
        assert self.directory is not None
        path = self.directory / f"{key}.kv"
        tmp = path.with_suffix(".tmp")
        try:
            with open_own(tmp, "wb") as fh:
                fh.write(_head(entry.tokens, data, entry.tag))
                fh.write(data)
            os.replace(tmp, path)
        except (OSError, UnsafePath):  # kept in RAM only
            return
        entry.path = path
        self._trim_disk()

    def _trim_disk(self) -> None:
        on_disk = [(k, e) for k, e in list(self.entries.items()) if e.path is not None]
        used = sum(e.size for _, e in on_disk)
        for key, entry in on_disk:
            if used <= self.disk_budget:
                break
            used -= entry.size
            if entry.data is None:
                self.entries.pop(key, None)
            if entry.path is not None:
                with contextlib.suppress(OSError):
                    entry.path.unlink()
                entry.path = None

    def _read_index(self) -> None:
        assert self.directory is not None
        files = sorted(self.directory.glob("*.kv"), key=lambda p: p.stat().st_mtime)
        for path in files:
            try:
                with open(path, "rb") as fh:
                    found = _read_head(fh)
                    if found is None:
                        continue
                    count, size, tag = found
                    tokens = np.frombuffer(fh.read(4 * count), dtype=np.int32)
            except (OSError, struct.error, UnicodeDecodeError):
                continue
            if len(tokens) == count:
                self.entries[path.stem] = Entry(tokens.copy(), None, path, size, tag)


_HEAD = struct.Struct("<IIII")


def _head(tokens: np.ndarray, data: bytes | memoryview, tag: str = "") -> bytes:
    """What a state file holds before the state itself."""
    tokens = tokens.astype(np.int32)
    label = tag.encode("utf-8")
    head = _HEAD.pack(len(tokens), memoryview(data).nbytes, zlib.crc32(data),
                      len(label))
    return _MAGIC + head + label + tokens.tobytes()


def _read_head(fh: BinaryIO) -> tuple[int, int, str] | None:
    """Token count, state size and tag of the state file open in ``fh``, or None."""
    head = fh.read(len(_MAGIC) + _HEAD.size)
    if not head.startswith(_MAGIC):
        return None
    count, size, _, label = _HEAD.unpack(head[len(_MAGIC):])
    return count, size, fh.read(label).decode("utf-8")


def _decode(raw: bytes) -> tuple[np.ndarray, memoryview]:
    if not raw.startswith(_MAGIC):
        raise ValueError("not a saved state")
    start = len(_MAGIC)
    count, size, crc, label = _HEAD.unpack(raw[start:start + _HEAD.size])
    start += _HEAD.size + label
    tokens = np.frombuffer(raw, dtype=np.int32, count=count, offset=start)
    data = memoryview(raw)[start + 4 * count:]  # a view: no copy of the state
    if len(data) != size:
        raise ValueError("truncated state file")
    if zlib.crc32(data) != crc:
        raise ValueError("damaged state file")
    return tokens, data


OWNER = "model"  # in a scope's directory: the model file (real path) its states are of
STALE_AFTER = 24 * 3600.0  # seconds unwritten after which claim() may remove a scope directory


def claim(directory: Path, model: str, unused_for: float = STALE_AFTER) -> int:
    """Mark ``directory`` (one scope under the states root) as holding ``model``'s states, and
    empty the other scope directories no load can use again: ``model``'s made with other
    settings or another llama.cpp, and the unmarked ones, made before scopes were marked (their
    key lacks the attention flag every key has since). Only directories nothing has written to
    for ``unused_for`` seconds go (another daemon on the same data may be using one; a marker
    that could not be written leaves a live one unmarked), and in them only state files,
    never through a symlink. Never raises: the number of directories removed."""
    with contextlib.suppress(OSError):  # unmarked, it is kept all the same while in use
        fd = os.open(directory / OWNER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)  # no symlink, no FIFO
        try:
            os.write(fd, model.encode())
        finally:
            os.close(fd)
    removed = 0
    before = time.time() - unused_for
    try:
        others = [p for p in directory.parent.iterdir() if p != directory]
    except OSError:
        return 0
    for other in others:
        try:
            if other.is_symlink() or not other.is_dir() or _newest(other) > before:
                continue
            owner = _owner(other / OWNER)
            if owner is not None and owner != model:  # another model's, or unreadable: kept
                continue
            for path in [*other.glob("*.kv"), *other.glob("*.tmp"), other / OWNER]:
                with contextlib.suppress(OSError):
                    path.unlink()
            other.rmdir()  # left in place (OSError) if it holds anything else
            removed += 1
        except OSError:
            continue
    return removed


def _newest(directory: Path) -> float:
    """When anything in ``directory`` (or the directory itself) was last written."""
    return max([directory.stat().st_mtime,
                *(e.stat(follow_symlinks=False).st_mtime for e in os.scandir(directory))])


def _owner(path: Path) -> str | None:
    """The model a scope's marker names: None when there is no marker, "" when it is no small
    regular UTF-8 file (never read through a symlink or from a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, 4096).decode()
    except (OSError, UnicodeDecodeError):
        return ""
    finally:
        os.close(fd)


def forget_on_disk(root: Path, tag: str) -> int:
    """Delete conversation ``tag``'s state files under ``root`` (every model's directory).

    For models the host has not loaded; a loaded one is told through the host (``forget``).
    """
    removed = 0
    if not tag or not root.is_dir() or root.is_symlink():
        return 0
    for path in root.glob("*/*.kv"):
        try:
            with open(path, "rb") as fh:
                found = _read_head(fh)
            if found is not None and found[2] == tag:
                path.unlink()
                removed += 1
        except (OSError, struct.error, UnicodeDecodeError):
            continue
    return removed
