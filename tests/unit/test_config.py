"""Settings: default.toml < user file < ASSISTANT_* environment < flags; every bad value named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment of our own: no user file unless a test writes one."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def user_file(env: dict[str, str], text: str) -> Path:
    path = Path(env["XDG_CONFIG_HOME"]) / "assistant" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_come_from_default_toml(env: dict[str, str]) -> None:
    settings = load_settings(environ=env)
    assert settings.models.default == "qwen2.5-coder-0.5b"
    assert settings.models.embedding == "minilm-l6"
    assert settings.daemon.log_level == "info"
    assert settings.models.pip_args == []


def test_each_layer_overrides_the_one_before(env: dict[str, str]) -> None:
    user_file(env, '[daemon]\nthreads = 2\nlog_level = "debug"\n'
                   '[models]\ndefault = "from-file"\nqueue = 5\n')
    assert load_settings(environ=env).daemon.threads == 2
    env |= {"ASSISTANT_MODEL": "from-env", "ASSISTANT_DAEMON__THREADS": "3"}
    settings = load_settings(environ=env)
    assert (settings.models.default, settings.daemon.threads) == ("from-env", 3)
    settings = load_settings({"daemon": {"threads": 4}, "models": {"default": "flag"}},
                             environ=env)
    assert settings.daemon.threads == 4
    assert settings.models.default == "flag"
    assert settings.models.queue == 5  # from the file, untouched by later layers
    assert settings.daemon.log_level == "debug"
    assert settings.models.keep_alive == 1800  # from the defaults


def test_assistant_config_names_the_user_file(env: dict[str, str], tmp_path: Path) -> None:
    user_file(env, "[daemon]\nthreads = 2\n")
    other = tmp_path / "other.toml"
    other.write_text("[daemon]\nthreads = 7\n")
    assert load_settings(environ=env | {"ASSISTANT_CONFIG": str(other)}).daemon.threads == 7


def test_environment_shortcuts(env: dict[str, str]) -> None:
    settings = load_settings(environ=env | {
        "ASSISTANT_DATA_DIR": "/d", "ASSISTANT_RUNTIME_DIR": "/r", "ASSISTANT_MODELS_DIR": "/m",
        "ASSISTANT_PLUGINS": "a, b", "ASSISTANT_PLUGINS_STRICT": "1",
        "ASSISTANT_LOG_LEVEL": "warning", "ASSISTANT_MODELS__PIP_ARGS": '["--no-index"]',
    })
    assert (settings.paths.data_dir, settings.paths.runtime_dir,
            settings.paths.models_dir) == ("/d", "/r", "/m")
    assert settings.plugins.enabled == ["a", "b"] and settings.plugins.strict is True
    assert settings.daemon.log_level == "warning"
    assert settings.models.pip_args == ["--no-index"]


@pytest.mark.parametrize(
    ("text", "key", "what"),
    [
        ("[daemon]\nthread = 2\n", "daemon.thread", "unknown setting"),
        ("[nonsense]\nx = 1\n", "nonsense", "unknown setting"),
        ('[daemon]\nthreads = "two"\n', "daemon.threads", "valid integer"),
        ("[daemon]\nthreads = -1\n", "daemon.threads", "greater than or equal to 0"),
        ("[models]\nparallel = 1000\n", "models.parallel", "less than or equal to 64"),
        ('[daemon]\nlog_level = "loud"\n', "daemon.log_level", "'debug', 'info'"),
        ('[models]\npip_args = "--no-index"\n', "models.pip_args", "valid list"),
    ],
)
def test_bad_file_values_name_file_and_key(
    env: dict[str, str], text: str, key: str, what: str
) -> None:
    path = user_file(env, text)
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and what in message


def test_bad_toml_names_the_file(env: dict[str, str]) -> None:
    path = user_file(env, "[daemon\nthreads = 2\n")
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_settings(environ=env)
    assert str(path) in str(err.value)


def test_bad_environment_value_names_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env | {"ASSISTANT_DAEMON__THREADS": "many"})
    assert "environment variable ASSISTANT_DAEMON__THREADS" in str(err.value)
    assert "'daemon.threads'" in str(err.value)


def test_bad_flag_is_named_as_a_flag(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"command-line flag: 'daemon\.threads'"):
        load_settings({"daemon": {"threads": -5}}, environ=env)


def test_assistant_config_pointing_nowhere(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env | {"ASSISTANT_CONFIG": str(missing)})
    assert "ASSISTANT_CONFIG" in str(err.value) and str(missing) in str(err.value)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("args", [[], ["models", "list"]])
def test_cli_exits_2_on_bad_config_and_starts_nothing(tmp_path: Path, args: list[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[daemon]\nlog_level = "loud"\n')
    runtime = tmp_path / "run"
    environ = dict(os.environ) | {"ASSISTANT_CONFIG": str(bad),
                                  "ASSISTANT_RUNTIME_DIR": str(runtime)}
    proc = subprocess.run(
        [sys.executable, "-c", "from assistant.cli import main; main()", *args],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(bad) in proc.stderr and "'daemon.log_level'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not runtime.exists() or not any(runtime.iterdir())


def test_make_run_provisions_every_model_the_defaults_use(env: dict[str, str]) -> None:
    """A fresh `make run` pulls the default chat model, the embedding model and the model of
    every bundled skill that names one."""
    import re

    settings = load_settings(environ=env)
    wanted = {settings.models.default, settings.models.embedding}
    wanted |= {str(section["model"]) for section in settings.skills.values()
               if isinstance(section, dict) and section.get("model")}
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"^RUN_MODELS := (.+)$", makefile, re.M)
    assert match is not None and "pull $(RUN_MODELS)" in makefile.split("run: install")[1]
    assert wanted <= set(match.group(1).split())
    assert settings.skill_section("summarize")["model"] == "qwen2.5-coder-1.5b"
