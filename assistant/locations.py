"""Where the assistant keeps things. Directories are made on first use, mode 0700.

data     $ASSISTANT_DATA_DIR, else $XDG_DATA_HOME/assistant: database, registry, model states
runtime  $ASSISTANT_RUNTIME_DIR, else $XDG_RUNTIME_DIR/assistant, else /tmp/assistant-<uid>
models   $ASSISTANT_MODELS_DIR, else <data>/models: assembled model files, shareable
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO, Any

from assistant.config import Settings
from assistant.errors import ConfigError, UnsafePath


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (0700) if missing; refuse one owned by someone else or open to others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"{path} belongs to another user.", "Choose a directory of your own."
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def data_dir(settings: Settings, create: bool = True) -> Path:
    if settings.paths.data_dir:
        path = Path(settings.paths.data_dir).expanduser()
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "assistant"
    return ensure_private_dir(path) if create else path


def runtime_dir(settings: Settings, create: bool = True) -> Path:
    if settings.paths.runtime_dir:
        path = Path(settings.paths.runtime_dir).expanduser()
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "assistant"
    else:
        path = Path("/tmp") / f"assistant-{os.getuid()}"
    return ensure_private_dir(path) if create else path


def models_dir(settings: Settings, create: bool = True) -> Path:
    if settings.paths.models_dir:
        path = Path(settings.paths.models_dir).expanduser()
    else:
        path = data_dir(settings, create) / "models"
    return ensure_private_dir(path) if create else path


def socket_path(settings: Settings, create: bool = True) -> Path:
    return runtime_dir(settings, create) / "assistant.sock"


def inside(root: Path, path: Path) -> Path:
    """``path``, when it stays inside ``root`` once symlinks are resolved; UnsafePath if not.

    For files and dirs the assistant writes in its own dirs: a symlink planted there (or
    restored from a backup) must not turn a write of ours into one anywhere the user can write.
    ``root`` itself may be a symlink: the user chose it.
    """
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise UnsafePath(
            f"{path} leads out of {root} (to {real}); refused.",
            "Remove the symlink (move the file back in place if it is yours).",
        )
    return path


def open_own(path: Path, mode: str = "wb") -> IO[Any]:
    """Open a file of ours for writing (``"wb"``) or appending (``"a"``), never through a
    symlink: one planted in our dirs would otherwise redirect the write anywhere."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{path} is a symlink; refused.",
                             "Remove the symlink (move the file back in place if it is yours).",
                             ) from None
        raise
    return os.fdopen(fd, mode)

