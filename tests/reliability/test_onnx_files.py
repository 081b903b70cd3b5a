"""ONNX models whose external data points outside their folder, against the CLI and the daemon.

An ONNX model can keep its weights in files it names itself. Named ``../../etc/passwd``, an
absolute path, or through a symlink out of the folder, those "weights" are any file the user
can read, and the model's outputs leak it. Every such model is refused with a message that
says so: by ``assistant models add``, and by the model host when a registered model is loaded
after its files were swapped; the daemon stays healthy and the model works again once its
files are put back.

How we checked these fail without their protection (each run with it taken out, then the code
restored and ``git diff`` checked):
- ``_check_external`` (assistant/models/onnx_info.py) made a no-op → both tests fail at the
  first variant, "parent". ``models add`` still fails there, but only because onnxruntime 1.32
  (installed here) now has a check of its own ("External data path validation failed"), which
  is not a clear message of ours; pyproject allows onnxruntime>=1.17, and releases without that
  check read the file. So the tests ask for our message, which holds whatever the runtime.
- the host's ``read_onnx`` before the session (assistant/models/onnx.py) removed → the daemon
  test fails at "symlinked file": model.onnx is unchanged, so the registry's cached facts skip
  reading it, and only the host's check stands between the swapped weights and the runtime.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from assistant.testing import RunningDaemon
from tests.reliability import onnxs
from tests.reliability.ggufs import models_add

SECRET = b"TOP-SECRET-" * 64
REFUSAL = "keeps its data in"


def _location(location: str) -> Callable[[Path, Path], None]:
    def make(folder: Path, outside: Path) -> None:
        (folder / "model.onnx").write_bytes(
            onnxs.model_bytes(location.replace("{OUTSIDE}", str(outside))))
    return make


def _symlinked_file(folder: Path, outside: Path) -> None:
    weights = folder / "weights.bin"
    weights.unlink()
    weights.symlink_to(outside / "secret.bin")


def _symlinked_folder(folder: Path, outside: Path) -> None:
    (folder / "model.onnx").write_bytes(onnxs.model_bytes("sub/secret.bin"))
    (folder / "sub").symlink_to(outside)


def _fifo(folder: Path, outside: Path) -> None:
    weights = folder / "weights.bin"
    weights.unlink()
    os.mkfifo(weights)  # a reader of it would wait for ever


HOSTILE: dict[str, Callable[[Path, Path], None]] = {
    "parent": _location("../outside/secret.bin"),
    "deep parent": _location("../" * 12 + "etc/passwd"),
    "absolute": _location("{OUTSIDE}/secret.bin"),
    "dot": _location("."),
    "runtime memory marker": _location("*/_ORT_MEM_ADDR_/*"),
    "symlinked file": _symlinked_file,
    "symlinked folder": _symlinked_folder,
    "not a regular file": _fifo,
}


def fresh_model(root: Path) -> tuple[Path, Path]:
    """A valid embedder in ``root/model``, and ``root/outside`` holding a secret."""
    shutil.rmtree(root, ignore_errors=True)
    outside = root / "outside"
    outside.mkdir(parents=True)
    (outside / "secret.bin").write_bytes(SECRET)
    return onnxs.embedder(root / "model"), outside


def registry(env: dict[str, str]) -> str:
    path = Path(env["ASSISTANT_DATA_DIR"]) / "models.json"
    return path.read_text() if path.exists() else ""


def test_external_data_outside_the_folder_is_refused_by_models_add(
    real_env: dict[str, str], tmp_path: Path
) -> None:
    model, _ = fresh_model(tmp_path / "valid")
    added = models_add(real_env, model, "valid-embedder")  # the builder makes loadable models
    assert added.returncode == 0, added.stderr
    before = registry(real_env)
    for what, make in HOSTILE.items():
        model, outside = fresh_model(tmp_path / "case")
        make(model.parent, outside)
        result = models_add(real_env, model, "hostile")
        assert result.returncode != 0, f"{what}: registered"
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr, (
            what, result.stderr)
        assert REFUSAL in result.stderr, (what, result.stderr)
        assert registry(real_env) == before, what


@pytest.mark.timeout(300)
def test_swapped_external_data_is_refused_at_load_and_daemon_stays_healthy(
    real_daemon: RunningDaemon, real_env: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "emb"
    model, outside = fresh_model(root)
    assert models_add(real_env, model, "emb").returncode == 0
    registered = model.read_bytes(), model.stat().st_mtime_ns
    body = {"model": "emb", "input": "hello world"}
    with real_daemon.http(60) as http:
        good = http.post("/v1/embeddings", json=body)
        assert good.status_code == 200, good.text
        reference = good.json()["data"][0]["embedding"]
        for what, make in HOSTILE.items():
            assert http.post("/api/models/emb/unload").status_code == 200
            # Swapped in place, after registration: the registry's check is behind us.
            fresh_model(root)
            make(model.parent, outside)
            if model.read_bytes() == registered[0]:
                # Only the weights changed: with the registered mtime the daemon uses the
                # facts it cached, and the model host is the one to refuse.
                os.utime(model, ns=(registered[1], registered[1]))
            response = http.post("/v1/embeddings", json=body)
            assert response.status_code != 200 and response.status_code != 500, (
                what, response.status_code, response.text)
            assert REFUSAL in response.json()["error"]["message"], (what, response.text)
            assert real_daemon.proc.poll() is None, f"{what}: the daemon died"
            assert http.get("/health").status_code == 200, what
        fresh_model(root)  # put back: it works again
        again = http.post("/v1/embeddings", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["data"][0]["embedding"] == pytest.approx(reference)
