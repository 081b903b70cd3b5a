"""Hostile model files and hostile paths, against `assistant models add` and the real daemon.

How these fail without their protection (each taken out, the test run, then restored; the
protections in files of other owners were taken out only in the test's processes, by a
``sitecustomize`` on PYTHONPATH that replaced one function, so the shared tree never changed):
- malformed GGUF: ``gguf.read_gguf`` replaced by one that trusts the file → "truncated header:
  registered".
- broken model files: the ``ModelError`` branch of ``error_response`` removed → the swapped
  file "loads in no llama.cpp" answered 500. (Before this suite it was 500 too:
  ``ModelIntegrityError`` fell through ``error_response``; it is 503 model_unavailable now.)
- names over HTTP: ``registry.resolve`` falling back to the name as a path under the models dir
  (Ollama's CVE-2024-37032) → ``../../../../etc/passwd`` answered 503, not 4xx.
- names in the CLI: ``registry.check_name`` a no-op → ``--name ../escape`` registered.
- symlinks: ``install.atomic_write_text`` writing in place → ``assistant routing correct``
  overwrote the victim outside the data dir through the planted ``routing-corrections.json``
  link. (Before this suite the router wrote its corrections through a fixed
  ``routing-corrections.tmp`` name, and the test failed then too.)
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

from assistant.testing import RunningDaemon
from tests.reliability.ggufs import corruptions, models_add, tiny


def registry(env: dict[str, str]) -> str:
    path = Path(env["ASSISTANT_DATA_DIR"]) / "models.json"
    return path.read_text() if path.exists() else ""


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_malformed_gguf_is_refused_by_models_add(real_env: dict[str, str],
                                                 tmp_path: Path) -> None:
    valid = tiny(tmp_path / "valid.gguf")
    before = registry(real_env)
    for what, data in corruptions(valid).items():
        path = tmp_path / "broken.gguf"
        path.write_bytes(data)
        result = models_add(real_env, path, "broken")
        assert result.returncode != 0, f"{what}: registered"
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr, (
            what, result.stderr)
        assert registry(real_env) == before, what


def test_broken_model_file_is_contained_and_daemon_stays_healthy(
    real_daemon: RunningDaemon, real_env: dict[str, str], tmp_path: Path
) -> None:
    path = tiny(tmp_path / "tiny.gguf")
    assert models_add(real_env, path, "tiny").returncode == 0
    valid = path.read_bytes()
    variants = {"loads in no llama.cpp": valid, **corruptions(path)}
    with real_daemon.http(60) as http:
        for what, data in variants.items():
            path.write_bytes(data)  # swapped after it was registered
            response = http.post("/api/models/tiny/load")
            assert 400 <= response.status_code < 600 and response.status_code != 500, (
                what, response.status_code, response.text)
            assert "error" in response.json(), what
            assert real_daemon.proc.poll() is None, f"{what}: the daemon died"
            assert http.get("/health").status_code == 200, what
        reply = http.post("/v1/chat/completions", json={
            "model": "smollm2-135m", "max_tokens": 2,
            "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text


HOSTILE_NAMES = ["../../../../etc/passwd", "..", "a/../../b", "/etc/passwd", "a\x00b",
                 "..\\..\\windows", "%2e%2e%2fetc", "x" * 5000]


def test_hostile_model_names_are_refused_over_http(
    real_daemon: RunningDaemon, tmp_path: Path
) -> None:
    data = Path(real_daemon.env["ASSISTANT_DATA_DIR"])
    before = snapshot(tmp_path)
    with real_daemon.http(30) as http:
        for name in HOSTILE_NAMES:
            quoted = urllib.parse.quote(name, safe="")
            statuses = [
                http.post(f"/api/models/{quoted}/load").status_code,
                http.post("/v1/chat/completions", json={
                    "model": name, "messages": [{"role": "user", "content": "hi"}]}).status_code,
                http.post("/v1/embeddings", json={"model": name, "input": "hi"}).status_code,
            ]
            assert all(400 <= s < 500 for s in statuses), (name, statuses)
            unload = http.post(f"/api/models/{quoted}/unload")
            assert unload.status_code in (200, 400, 404, 422), (name, unload.status_code)
            assert unload.status_code != 200 or unload.json()["unloaded"] is False
            # The turn API has committed the user message by then: its stream ends in error.
            turn = http.post("/api/turns", json={"text": "hi", "model": name, "skill": "chat"})
            assert 400 <= turn.status_code < 500 or (
                turn.status_code == 200 and "event: error" in turn.text
                and "event: done" not in turn.text), (name, turn.status_code, turn.text)
        assert http.get("/health").status_code == 200
    after = snapshot(tmp_path)
    written = {k for k in after if after[k] != before.get(k)}
    data_part = str(data.relative_to(tmp_path))
    assert all(k.startswith(data_part) or k == "daemon.log" for k in written), written


def test_hostile_names_paths_and_symlinks_are_refused_by_the_cli(
    real_env: dict[str, str], tmp_path: Path
) -> None:
    valid = tiny(tmp_path / "valid.gguf")
    for name in ["../escape", "a/b", "..", "-rf", "a b"]:
        result = models_add(real_env, valid, name)
        assert result.returncode != 0 and "cannot use" in result.stderr, (name, result.stderr)
    for target in ["/etc/passwd", str(tmp_path / "data" / ".." / ".." / "nothing.gguf")]:
        result = models_add(real_env, Path(target), "x")
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr

    # Files the assistant writes, replaced by symlinks to a file outside its dirs.
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("keep me\n")
    data = Path(real_env["ASSISTANT_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    for name in ["models.json", "routing-corrections.json", "routing-corrections.tmp"]:
        (data / name).symlink_to(victim)
    assert models_add(real_env, valid, "valid").returncode in (0, 1)
    subprocess.run([sys.executable, "-m", "assistant", "routing", "correct",
                    "please do the thing", "chat"], env=real_env, capture_output=True,
                   text=True, timeout=120)
    assert victim.read_text() == "keep me\n", "wrote through a symlink out of the data dir"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    corrections = data / "routing-corrections.json"
    if corrections.exists() and not corrections.is_symlink():
        assert json.loads(corrections.read_text())["examples"]
