"""The saved-state cache: prefix lookup, ancestors replaced, budgets, disk round trip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from assistant.models.kv_cache import StateCache, claim, common_prefix, forget_on_disk


def toks(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int32)


def test_common_prefix() -> None:
    assert common_prefix(toks(1, 2, 3), toks(1, 2, 4)) == 2
    assert common_prefix(toks(1, 2), toks(1, 2, 3)) == 2
    assert common_prefix(toks(), toks(1)) == 0


def test_best_entry_is_the_longest_shared_prefix(tmp_path: Path) -> None:
    cache = StateCache(tmp_path, 1 << 20, 1 << 20)
    cache.put(toks(1, 2, 3, 4), b"a" * 10)
    cache.put(toks(1, 2, 9, 9, 9), b"b" * 10)
    entry, n = cache.best(toks(1, 2, 3, 4, 5))
    assert entry is not None and n == 4 and cache.load(entry) == b"a" * 10
    entry, n = cache.best(toks(7))
    assert entry is None and n == 0


def test_a_longer_state_replaces_its_ancestor_and_the_others_stay(tmp_path: Path) -> None:
    cache = StateCache(tmp_path, 1 << 20, 1 << 20)
    cache.put(toks(1, 2, 3), b"a")
    cache.put(toks(5, 6, 7), b"b")
    cache.put(toks(1, 2, 3, 4), b"c")
    assert sorted(len(e.tokens) for e in cache.entries.values()) == [3, 4]
    assert len(list(tmp_path.glob("*.kv"))) == 2
    cache.put(toks(1, 2, 3, 4), b"d")  # the same prefix again: replaced, not dropped
    assert len(cache.entries) == 2 and len(list(tmp_path.glob("*.kv"))) == 2


def test_ram_budget_keeps_states_on_disk_and_a_restart_finds_them(tmp_path: Path) -> None:
    cache = StateCache(tmp_path, 15, 1 << 20)
    cache.put(toks(1, 1), b"x" * 10)
    cache.put(toks(2, 2), b"y" * 10)
    stats = cache.stats()
    assert stats["entries"] == 2 and stats["ram_bytes"] == 10 and stats["evictions"] == 1
    again = StateCache(tmp_path, 15, 1 << 20)
    entry, n = again.best(toks(1, 1, 5))
    assert entry is not None and n == 2 and again.load(entry) == b"x" * 10


def test_disk_budget_removes_the_oldest_files(tmp_path: Path) -> None:
    cache = StateCache(tmp_path, 0, 25)
    for i in range(4):
        cache.put(toks(i, i), bytes([i]) * 10)
    assert cache.stats()["disk_bytes"] <= 25
    assert len(list(tmp_path.glob("*.kv"))) == 2


def test_a_damaged_state_file_is_never_used(tmp_path: Path) -> None:
    cache = StateCache(tmp_path, 0, 1 << 20)
    cache.put(toks(1, 2, 3), b"z" * 100)
    (path,) = tmp_path.glob("*.kv")
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    again = StateCache(tmp_path, 0, 1 << 20)
    entry, _ = again.best(toks(1, 2, 3))
    assert entry is not None and again.load(entry) is None
    assert again.best(toks(1, 2, 3)) == (None, 0)


def test_a_state_with_a_flipped_byte_is_never_used(tmp_path: Path) -> None:
    cache = StateCache(tmp_path, 0, 1 << 20)
    cache.put(toks(1, 2, 3), bytes(range(100)))
    (path,) = tmp_path.glob("*.kv")
    raw = bytearray(path.read_bytes())
    raw[-50] ^= 0x01  # same length, one bit wrong
    path.write_bytes(bytes(raw))
    again = StateCache(tmp_path, 0, 1 << 20)
    entry, _ = again.best(toks(1, 2, 3))
    assert entry is not None and again.load(entry) is None
    assert not list(tmp_path.glob("*.kv"))  # forgotten, file and all


def test_a_conversations_states_are_forgotten_by_its_tag(tmp_path: Path) -> None:
    scope = tmp_path / "scope-a"
    cache = StateCache(scope, 1 << 20, 1 << 20)
    cache.put(toks(1, 2, 3), b"a" * 10, "conv-1")
    cache.put(toks(4, 5, 6), b"b" * 10, "conv-2")
    cache.put(toks(7, 8, 9), b"c" * 10)
    assert cache.forget("conv-1") == 1 and cache.forget("") == 0
    assert {e.tag for e in cache.entries.values()} == {"conv-2", ""}
    assert len(list(scope.glob("*.kv"))) == 2
    # a model that is not loaded: its files are found and removed by their header
    other = StateCache(tmp_path / "scope-b", 1 << 20, 1 << 20)
    other.put(toks(1, 1, 1), b"d" * 10, "conv-2")
    assert forget_on_disk(tmp_path, "conv-2") == 2
    assert [p.parent.name for p in tmp_path.glob("*/*.kv")] == ["scope-a"]
    again = StateCache(scope, 1 << 20, 1 << 20)
    assert [e.tag for e in again.entries.values()] == [""]


def test_a_state_extending_another_conversations_keeps_that_one(tmp_path: Path) -> None:
    cache = StateCache(tmp_path, 1 << 20, 1 << 20)
    cache.put(toks(1, 2, 3), b"a", "conv-a")
    cache.put(toks(1, 2, 3, 4), b"b", "conv-b")  # a new conversation resending a's history
    assert cache.forget("conv-a") == 1
    assert [e.tag for e in cache.entries.values()] == ["conv-b"]


def test_a_load_removes_the_directories_no_load_can_use_again(tmp_path: Path) -> None:
    root = tmp_path / "states"

    def scope(name: str, owner: str | None) -> Path:
        cache = StateCache(root / name, 1 << 20, 1 << 20)
        cache.put(toks(*range(8)), b"s" * 10)
        if owner is not None:
            (root / name / "model").write_text(owner)
        return root / name

    old = scope("before-marks", None)  # made before scopes named their model: unusable now
    other_settings = scope("a-2048", "/m/a.gguf")
    other_model = scope("b", "/m/b.gguf")
    mine = scope("a-4096", None)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    (other_model / "model").unlink()
    os.mkfifo(other_model / "model")  # a marker that is no file is never read: it stays
    assert claim(mine, "/m/a.gguf") == 0  # all written just now: another daemon's, maybe
    assert claim(mine, "/m/a.gguf", unused_for=-60) == 2
    assert not old.exists() and not other_settings.exists()
    assert sorted(p.name for p in root.iterdir()) == ["a-4096", "b", "link"]
    assert (mine / "model").read_text() == "/m/a.gguf" and list(mine.glob("*.kv"))
    assert list(other_model.glob("*.kv")) and (tmp_path / "elsewhere").is_dir()
    # The directory kept still serves: a restart finds its state.
    entry, n = StateCache(mine, 1 << 20, 1 << 20).best(toks(*range(8)))
    assert entry is not None and n == 8
