"""Which models exist and where their files are: the catalog's, and the ones a user added.

Catalog models are installed when their verified file is in the models dir (see ``install``).
Local models are listed in ``<data_dir>/models.json``, registered in place and never copied;
the file is checked to be a real GGUF or ONNX model before it is registered. Facts read from a
file (context length, quantization, …) are cached keyed by its size and mtime, in the install
stamp for catalog models and in the registry for local ones, so ``list`` reads no model file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from assistant.config import Settings
from assistant.errors import ConfigError, ModelError, ModelIntegrityError, ModelNotFound
from assistant.locations import data_dir, open_own
from assistant.models import catalog, footprint, install
from assistant.models.catalog import CatalogEntry

Kind = Literal["chat", "embedding"]
Origin = Literal["catalog", "local"]
REGISTRY_VERSION = 1
MAX_TOKENIZER_BYTES = 64 << 20
# Bumped when the readers learn new facts, so that cached facts are read again.
FACTS_VERSION = 2  # 2: attention heads and key and value widths (the KV cache's size)


@dataclass(frozen=True)
class ModelRecord:
    """A model that can be loaded now: its file exists (and, for the catalog, is verified)."""

    name: str
    kind: Kind
    path: Path
    tokenizer_path: Path | None
    source: Origin
    # context_length, architecture, parameters, quantization, chat_template (bool), size_bytes…
    facts: dict[str, Any]


@dataclass(frozen=True)
class ModelStatus:
    """A row of ``models list``: any known model, installed or not."""

    name: str
    kind: Kind
    source: Origin
    installed: bool
    default: bool
    path: Path
    tokenizer_path: Path | None
    size_bytes: int
    facts: dict[str, Any]
    description: str
    problem: str | None = None


@dataclass(frozen=True)
class RemovalPlan:
    files: tuple[Path, ...]
    done_message: str


def read_facts(path: Path) -> dict[str, Any]:
    """Facts from a GGUF or ONNX file; ModelIntegrityError when it is neither, or damaged."""
    from assistant.models.gguf import is_gguf, read_gguf
    from assistant.models.onnx_info import read_onnx

    if not path.is_file():
        raise ModelNotFound(f"{path} does not exist or is not a file.")
    if is_gguf(path) or path.suffix.lower() == ".gguf":
        facts = read_gguf(path).summary()  # raises, saying so, when it is not GGUF
        facts["facts_version"] = FACTS_VERSION
        return facts
    try:
        facts = read_onnx(path).summary()
        facts["facts_version"] = FACTS_VERSION
        return facts
    except ModelIntegrityError:
        if path.suffix.lower() == ".onnx":
            raise
        raise ModelIntegrityError(
            f"{path} is neither a GGUF nor an ONNX model.",
            "Give the path of a .gguf chat model or an .onnx embedding model.",
        ) from None


def _file_key(path: Path) -> list[int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


# -- the registry file ---------------------------------------------------------------------

def registry_path(settings: Settings) -> Path:
    return data_dir(settings) / "models.json"


@contextlib.contextmanager
def _registry_lock(settings: Settings) -> Iterator[None]:
    path = registry_path(settings)
    with open_own(path.with_name(".models.json.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load(settings: Settings) -> dict[str, dict[str, Any]]:
    path = registry_path(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"the model registry {path} cannot be read: {exc}",
            "Fix or delete the file (it only lists models you added; their files stay).",
        ) from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ModelError(f"the model registry {path} is damaged (no 'models' table).",
                         "Fix or delete the file.")
    return {k: v for k, v in models.items() if isinstance(v, dict)}


def _save(settings: Settings, models: dict[str, dict[str, Any]]) -> None:
    text = json.dumps({"version": REGISTRY_VERSION, "models": models}, indent=2,
                      sort_keys=True)
    install.atomic_write_text(registry_path(settings), text + "\n")


# -- facts -----------------------------------------------------------------------------------

def _catalog_facts(settings: Settings, entry: CatalogEntry) -> dict[str, Any]:
    path = install.artifact_path(settings, entry.model_file)
    stamp = install.read_stamp(path)
    if stamp is None or stamp.get("sha256") != entry.model_file.sha256:
        return {"quantization": entry.quantization}
    facts = stamp.get("facts")
    if not isinstance(facts, dict) or facts.get("facts_version") != FACTS_VERSION:
        facts = read_facts(path)
        with contextlib.suppress(OSError):
            install.write_stamp(path, entry.model_file.sha256, facts)
    return facts


def _local_facts(settings: Settings, name: str, item: dict[str, Any]) -> dict[str, Any]:
    path = Path(item["path"])
    key = _file_key(path)
    if key is None:
        raise ModelNotFound(
            f"the file of model '{name}' is gone: {path}",
            f"Put it back, or forget it with `assistant models rm {name}`.",
        )
    facts = item.get("facts")
    if isinstance(facts, dict) and item.get("facts_key") == key \
            and facts.get("facts_version") == FACTS_VERSION:
        return facts
    facts = read_facts(path)
    with contextlib.suppress(OSError, ModelError), _registry_lock(settings):
        models = _load(settings)
        if name in models:
            models[name].update(facts=facts, facts_key=key)
            _save(settings, models)
    return facts


def _tokenizer_of(settings: Settings, entry: CatalogEntry) -> Path | None:
    for artifact in entry.artifacts[1:]:
        if artifact.filename.endswith("tokenizer.json"):
            return install.artifact_path(settings, artifact)
    return None


# -- the public API --------------------------------------------------------------------------

def resolve(settings: Settings, name: str) -> ModelRecord:
    """The loadable model called ``name``; ModelNotFound says how to get it when it is not."""
    entry = catalog.CATALOG.get(name)
    if entry is not None:
        if not install.is_installed(settings, entry):
            raise ModelNotFound(
                f"model '{name}' is not installed.",
                f"Run `assistant models pull {name}`.",
            )
        return ModelRecord(
            name=name, kind=entry.kind,
            path=install.artifact_path(settings, entry.model_file),
            tokenizer_path=_tokenizer_of(settings, entry), source="catalog",
            facts=_catalog_facts(settings, entry),
        )
    item = _load(settings).get(name)
    if item is None:
        raise ModelNotFound(
            f"no model named '{name}'.",
            "`assistant models list` shows the known ones; `assistant models pull NAME` "
            "installs a catalog model; `assistant models add PATH` registers a local file.",
        )
    facts = _local_facts(settings, name, item)
    tokenizer = item.get("tokenizer")
    return ModelRecord(
        name=name, kind=item["kind"], path=Path(item["path"]),
        tokenizer_path=Path(tokenizer) if tokenizer else None, source="local", facts=facts,
    )


def list_models(settings: Settings) -> list[ModelStatus]:
    """Every catalog model, then every local one; installed or not; defaults flagged."""
    defaults = {settings.models.default, settings.models.embedding}
    out = []
    for entry in catalog.CATALOG.values():
        path = install.artifact_path(settings, entry.model_file)
        installed = install.is_installed(settings, entry)
        problem = None
        try:
            facts = _catalog_facts(settings, entry)
        except ModelError as exc:
            facts, problem = {"quantization": entry.quantization}, exc.message
        size = facts.get("size_bytes") or entry.download_size
        out.append(ModelStatus(
            name=entry.name, kind=entry.kind, source="catalog", installed=installed,
            default=entry.name in defaults, path=path,
            tokenizer_path=_tokenizer_of(settings, entry), size_bytes=int(size), facts=facts,
            description=entry.description, problem=problem,
        ))
    for name, item in sorted(_load(settings).items()):
        problem = None
        try:
            facts = _local_facts(settings, name, item)
        except ModelError as exc:
            facts, problem = dict(item.get("facts") or {}), exc.message
        tokenizer = item.get("tokenizer")
        out.append(ModelStatus(
            name=name, kind=item.get("kind", "chat"), source="local",
            installed=problem is None, default=name in defaults, path=Path(item["path"]),
            tokenizer_path=Path(tokenizer) if tokenizer else None,
            size_bytes=int(facts.get("size_bytes") or 0), facts=facts,
            description=f"added {item.get('added', '')}".strip(), problem=problem,
        ))
    return out


def check_name(name: str) -> str:
    """Refuse names that could not be a plain single token on a command line or a path part."""
    problem = None
    if not name:
        problem = "it is empty"
    elif len(name) > 128:
        problem = "it is longer than 128 characters"
    elif "\x00" in name:
        problem = "it contains a NUL character"
    elif "/" in name or "\\" in name:
        problem = "it contains a slash"
    elif ".." in name:
        problem = "it contains '..'"
    elif any(c.isspace() for c in name):
        problem = "it contains whitespace"
    elif not name.isprintable():
        problem = "it contains control characters"
    elif name.startswith("-"):
        problem = "it starts with '-'"
    if problem:
        raise ModelError(f"cannot use {name!r} as a model name: {problem}.",
                         "Choose another with --name.")
    return name


def add(
    settings: Settings, path: Path, name: str | None = None, tokenizer: Path | None = None
) -> ModelRecord:
    """Register a local GGUF or ONNX file in place. Nothing is registered unless it is valid."""
    path = path.expanduser().resolve()
    name = check_name(name if name is not None else path.stem)
    if name in catalog.CATALOG:
        raise ModelError(f"'{name}' is a catalog model's name.", "Choose another with --name.")
    facts = read_facts(path)
    kind: Kind = "embedding" if facts.get("kind") == "embedding" else "chat"
    tokenizer_path: Path | None = None
    if facts["format"] == "onnx":
        from assistant.models.onnx_info import check_loadable

        tokenizer_path = _check_tokenizer(
            (tokenizer or path.with_name("tokenizer.json")).expanduser().resolve(),
            given=tokenizer is not None,
        )
        check_loadable(path)
    elif tokenizer is not None:
        raise ModelError("--tokenizer is for ONNX models; a GGUF file carries its own.")
    with _registry_lock(settings):
        models = _load(settings)
        if name in models:
            raise ModelError(
                f"a model named '{name}' is already registered ({models[name].get('path')}).",
                f"Choose another with --name, or first `assistant models rm {name}`.",
            )
        models[name] = {
            "path": str(path), "kind": kind, "format": facts["format"],
            "tokenizer": str(tokenizer_path) if tokenizer_path else None,
            "added": time.strftime("%Y-%m-%d %H:%M:%S"),
            "facts": facts, "facts_key": _file_key(path),
        }
        _save(settings, models)
    return ModelRecord(name=name, kind=kind, path=path, tokenizer_path=tokenizer_path,
                       source="local", facts=facts)


def _check_tokenizer(path: Path, given: bool) -> Path:
    if not path.is_file():
        raise ModelError(
            f"the ONNX model needs its tokenizer, and {path} does not exist.",
            "Pass --tokenizer PATH/tokenizer.json." if not given else None,
        )
    try:
        if path.stat().st_size > MAX_TOKENIZER_BYTES:
            raise ModelError(f"{path} is too large to be a tokenizer.json.")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable tokenizer.json: {exc}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ModelError(f"{path} is not a Hugging Face tokenizer.json (no 'model').")
    return path


def describe(settings: Settings, name: str) -> dict[str, Any]:
    """Everything ``models show`` prints: ``path`` is the model file."""
    for status in list_models(settings):
        if status.name != name:
            continue
        info: dict[str, Any] = dict(status.facts)
        info.update(
            name=status.name, kind=status.kind, source=status.source, path=str(status.path),
            installed=status.installed, default=status.default,
            tokenizer_path=str(status.tokenizer_path) if status.tokenizer_path else None,
            description=status.description, problem=status.problem,
        )
        info.setdefault("size_bytes", status.size_bytes)
        if status.installed:
            info["memory"] = footprint.plan(
                status.kind, status.facts, status.size_bytes, settings.models,
                embed_batch=settings.embeddings.batch).summary()
        if status.kind == "chat":
            from assistant.models.cpu import planned

            try:
                info["cpu_variant"] = planned(settings.models.cpu_variant)
            except ConfigError as exc:
                info["cpu_variant"] = f"refused: {exc.message}"
        return info
    resolve(settings, name)  # raises ModelNotFound with the hint
    raise ModelNotFound(f"no model named '{name}'.")


def removal_plan(settings: Settings, name: str) -> RemovalPlan:
    entry = catalog.CATALOG.get(name)
    if entry is not None:
        files = []
        for artifact in entry.artifacts:
            path = install.artifact_path(settings, artifact)
            files += [p for p in (path, install.stamp_path(path)) if p.exists()]
        if not files:
            raise ModelNotFound(f"model '{name}' is not installed; nothing to remove.")
        return RemovalPlan(tuple(files), f"removed {name} ({len(files)} files)")
    if name not in _load(settings):
        raise ModelNotFound(f"no model named '{name}'.",
                            "`assistant models list` shows the known ones.")
    return RemovalPlan((), f"forgot {name}; its file was left where it is")


def remove(settings: Settings, name: str) -> None:
    """Forget a local model (never touching its file), or delete a catalog model's files."""
    entry = catalog.CATALOG.get(name)
    if entry is not None:
        install.remove(settings, entry)
        return
    with _registry_lock(settings):
        models = _load(settings)
        if models.pop(name, None) is None:
            raise ModelNotFound(f"no model named '{name}'.")
        _save(settings, models)
