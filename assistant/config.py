"""Typed settings: default.toml < user file < ASSISTANT_* environment < command-line flags.

Every layer is a nested dict; :func:`load_settings` merges them, remembers where each key came
from, and validates the result so that an error can name the file (or variable, or flag) and
the key that is wrong. Nothing is read at import time.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from assistant.errors import ConfigError

DEFAULT_FILE = Path(__file__).with_name("default.toml")

# Short environment variables of the public contract, and the key each one sets.
ENV_SHORTCUTS: dict[str, tuple[str, str]] = {
    "ASSISTANT_DATA_DIR": ("paths", "data_dir"),
    "ASSISTANT_RUNTIME_DIR": ("paths", "runtime_dir"),
    "ASSISTANT_MODELS_DIR": ("paths", "models_dir"),
    "ASSISTANT_MODEL": ("models", "default"),
    "ASSISTANT_PLUGINS": ("plugins", "enabled"),
    "ASSISTANT_PLUGINS_STRICT": ("plugins", "strict"),
    "ASSISTANT_LOG_LEVEL": ("daemon", "log_level"),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PathsSettings(_Section):
    data_dir: str = ""
    runtime_dir: str = ""
    models_dir: str = ""


class DaemonSettings(_Section):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    threads: int = Field(0, ge=0, le=512)
    tcp: str = ""
    max_body_bytes: int = Field(1_048_576, ge=1024)
    shutdown_grace: float = Field(10.0, ge=0)
    start_timeout: float = Field(60.0, gt=0)
    max_tcp_connections: int = Field(512, ge=1, le=100_000)
    max_tcp_connections_per_peer: int = Field(256, ge=1, le=100_000)
    max_unix_connections: int = Field(2048, ge=16, le=100_000)

    @field_validator("max_tcp_connections_per_peer")
    @classmethod
    def _per_peer_within_total(cls, value: int, info: ValidationInfo) -> int:
        total = info.data.get("max_tcp_connections")
        if total is not None and value > total:
            raise ValueError(f"it cannot be over max_tcp_connections ({total})")
        return value


# Seconds an idle model stays loaded: -1 keeps it until unloaded; past a year is a mistake.
KEEP_ALIVE_MIN = -1
KEEP_ALIVE_MAX = 365 * 24 * 3600


class ModelsSettings(_Section):
    default: str = Field("qwen2.5-coder-0.5b", min_length=1)
    embedding: str = Field("minilm-l6", min_length=1)
    preload: list[str] = []
    keep_alive: int = Field(1800, ge=KEEP_ALIVE_MIN, le=KEEP_ALIVE_MAX)
    pinned: list[str] = []
    memory_budget_mb: int = Field(8192, ge=64)
    context_length: int = Field(4096, ge=0)
    parallel: int = Field(4, ge=1, le=64)
    queue: int = Field(64, ge=0, le=100_000)
    pip_args: list[str] = []
    state_ram_mb: int = Field(1024, ge=0)
    state_disk_mb: int = Field(4096, ge=0)
    cpu_variant: str = Field("auto", pattern=r"^[a-z0-9_.]+$")
    tool_call_grammar: bool = True
    host_deadline: float = Field(15.0, ge=0)


class EmbeddingsSettings(_Section):
    batch: int = Field(8, ge=1, le=256)
    max_inputs: int = Field(2048, ge=1, le=100_000)
    max_input_chars: int = Field(8192, ge=1)
    max_total_chars: int = Field(262_144, ge=1)
    queue: int = Field(8, ge=0, le=100_000)


class SearchSettings(_Section):
    max_query_chars: int = Field(1000, ge=1)
    max_terms: int = Field(32, ge=1)
    timeout: float = Field(5.0, gt=0)
    concurrency: int = Field(2, ge=1, le=64)
    queue: int = Field(8, ge=0, le=10_000)


class StoreSettings(_Section):
    url: str = ""


# An engine's name prefixes its models ("gpu/qwen2.5-7b"), in config keys and env variables
# (ASSISTANT_ENGINES__GPU__BASE_URL): lower case, no "/".
ENGINE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class EngineSettings(_Section):
    """One remote engine, ``[engines.NAME]``: any OpenAI-compatible server."""

    base_url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    # The environment variable holding the key (never the key itself); "": no key.
    api_key_env: str = Field("", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")
    models: list[str] = []
    timeout: float = Field(600.0, gt=0)
    max_concurrency: int = Field(8, ge=1, le=1024)
    # The context its models run with (as the server was started); 0: not known, and then
    # conversations on them are not compacted to fit.
    context_length: int = Field(0, ge=0)
    # Send llama.cpp's "cache_prompt": true (keep the prompt's state for the next request):
    # "auto" sends it to llama.cpp's server only (its /v1/models says owned_by "llamacpp").
    cache_prompt: bool | Literal["auto"] = "auto"

    @field_validator("models")
    @classmethod
    def _plain_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or len(name) > 200 or any(c.isspace() for c in name):
                raise ValueError(f"{name!r} is not a model name the engine could serve")
        return value


class PluginsSettings(_Section):
    enabled: list[str] = []
    strict: bool = False
    skill_timeout: float = Field(60.0, gt=0)
    hook_timeout: float = Field(5.0, gt=0)
    max_failures: int = Field(5, ge=1)
    cooldown: float = Field(60.0, ge=0, le=3600)


class TuiSettings(_Section):
    theme: str = Field("textual-dark", min_length=1)
    max_tokens: int = Field(0, ge=0)
    keys: dict[str, str] = {}


class Settings(_Section):
    paths: PathsSettings = PathsSettings()
    daemon: DaemonSettings = DaemonSettings()
    models: ModelsSettings = ModelsSettings()
    embeddings: EmbeddingsSettings = EmbeddingsSettings()
    store: StoreSettings = StoreSettings()
    search: SearchSettings = SearchSettings()
    plugins: PluginsSettings = PluginsSettings()
    tui: TuiSettings = TuiSettings()
    skills: dict[str, dict[str, Any]] = {}
    engines: dict[Annotated[str, Field(pattern=ENGINE_NAME)], EngineSettings] = {}
    guards: dict[str, dict[str, Any]] = {}

    def skill_section(self, name: str) -> dict[str, Any]:
        """The plugin's own ``[skills.<name>]`` section (empty when absent)."""
        return dict(self.skills.get(name, {}))


@dataclass
class _Layers:
    """The merged raw values, and for each dotted key the layer that set it."""

    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)

    def merge(self, data: dict[str, Any], source: str, prefix: str = "") -> None:
        target = self.values
        for part in prefix.split(".") if prefix else []:
            target = target.setdefault(part, {})
        for key, value in data.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                self.merge(value, source, dotted)
            else:
                target[key] = value
                self.origin[dotted] = source
                if isinstance(value, dict):
                    for sub in _dotted_keys(value, dotted):
                        self.origin[sub] = source


def _dotted_keys(data: dict[str, Any], prefix: str) -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}.{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(_dotted_keys(value, dotted))
    return keys


def user_config_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("ASSISTANT_CONFIG"):
        return Path(env["ASSISTANT_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "assistant" / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config error: {path} is not valid TOML: {exc}", "Fix the file and run again."
        ) from None
    except OSError as exc:
        raise ConfigError(f"config error: cannot read {path}: {exc.strerror}") from None


def _env_value(raw: str) -> Any:
    """Environment values are TOML literals when they parse as one, else plain strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_layer(env: dict[str, str]) -> dict[str, tuple[dict[str, Any], str]]:
    layer: dict[str, tuple[dict[str, Any], str]] = {}
    for name, value in sorted(env.items()):
        if name in ENV_SHORTCUTS:
            section, key = ENV_SHORTCUTS[name]
            parsed: Any = value
            if key == "enabled":
                parsed = [p.strip() for p in value.split(",") if p.strip()]
            elif key == "strict":
                parsed = value.strip().lower() in {"1", "true", "yes", "on"}
            layer[name] = ({section: {key: parsed}}, f"environment variable {name}")
        elif name.startswith("ASSISTANT_") and "__" in name:
            path = name[len("ASSISTANT_"):].lower().split("__")
            nested: dict[str, Any] = {path[-1]: _env_value(value)}
            for part in reversed(path[:-1]):
                nested = {part: nested}
            layer[name] = (nested, f"environment variable {name}")
    return layer


def load_settings(
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Read every layer and validate. ``overrides`` are command-line flags, as a nested dict."""
    env = dict(os.environ if environ is None else environ)
    layers = _Layers()
    layers.merge(_read_toml(DEFAULT_FILE), f"built-in defaults ({DEFAULT_FILE})")
    user = user_config_path(env)
    if user.exists():
        layers.merge(_read_toml(user), str(user))
    elif env.get("ASSISTANT_CONFIG"):
        raise ConfigError(
            f"config error: ASSISTANT_CONFIG names {user}, which does not exist.",
            "Create the file or unset ASSISTANT_CONFIG.",
        )
    for data, source in _env_layer(env).values():
        layers.merge(data, source)
    if overrides:
        layers.merge(overrides, "command-line flag")
    try:
        return Settings.model_validate(layers.values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers)) from None


def _describe(exc: ValidationError, layers: _Layers) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        source = layers.origin.get(key) or _nearest_origin(key, layers)
        if err["type"] == "extra_forbidden":
            lines.append(f"config error: {source}: unknown setting '{key}'.")
            continue
        value = err.get("input")
        lines.append(
            f"config error: {source}: '{key}' = {value!r} is not allowed: {err['msg']}."
        )
    lines.append("See config/default.toml for every setting and what it accepts.")
    return "\n".join(lines)


def _nearest_origin(key: str, layers: _Layers) -> str:
    while "." in key:
        key = key.rsplit(".", 1)[0]
        if key in layers.origin:
            return layers.origin[key]
    return "configuration"
