"""The plugin author's dev loop without a daemon or a model: ``plugins new`` writes a plugin
whose own tests pass once it is installed, ``plugins install`` runs pip in the daemon's
environment, ``/api/plugins/reload`` asks the daemon to restart, and the test kit keeps a
plugin's own environment variables. The whole journey through a real daemon, in a fresh venv:
tests/integration/test_plugin_author_journey.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.cli.constraints import pins
from assistant.cli.scaffold import DISTRIBUTION, MAX_NAME, NAME
from assistant.testing import InProcessDaemon, core_variable, daemon_environment
from tests.conftest import REPO
from tests.installed import install_plugin

OFFLINE = ["--no-deps", "--no-index", "--no-build-isolation"]


def test_plugins_depend_on_the_projects_own_distribution_name() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
    assert DISTRIBUTION == project != "assistant"
    example = tomllib.loads((REPO / "examples/assistant-shout/pyproject.toml").read_text())
    assert example["project"]["dependencies"] == [project]


def test_plugins_new_writes_a_plugin_whose_tests_pass_once_installed(tmp_path: Path) -> None:
    made = CliRunner().invoke(main, ["plugins", "new", "word_count", "--dir", str(tmp_path)])
    assert made.exit_code == 0, made.output
    root = tmp_path / "assistant-word-count"
    assert f"created {root}" in made.output and "plugins install -e" in made.output
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "assistant-word-count"
    assert meta["project"]["dependencies"] == [DISTRIBUTION]
    assert meta["project"]["entry-points"]["assistant"] == {"word_count": "assistant_word_count"}

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *OFFLINE, "--target",
                    str(site), str(root)], check=True, capture_output=True, timeout=300)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(site), *os.environ.get("PYTHONPATH", "")
                                          .split(os.pathsep)]).rstrip(os.pathsep)}
    # Its own temp root: a pytest on the shared one takes permissions off it that this run's
    # PostgreSQL server needs (tests/databases.py).
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"--basetemp={tmp_path / 'pytest'}"],
                           cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout

    # Installed, it is found through its entry point like any plugin.
    listed = subprocess.run([sys.executable, "-m", "assistant", "plugins", "list", "--json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    found = {p["name"]: p for p in json.loads(listed.stdout)}
    assert found["word_count"]["skills"] == ["word_count"]
    assert found["word_count"]["status"] == "loaded" and not found["word_count"]["bundled"]


def test_plugins_new_refuses_a_bad_name_and_an_existing_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["plugins", "new", "Word-Count", "--dir", str(tmp_path)])
    assert bad.exit_code == 1 and "'Word-Count' cannot name a plugin" in bad.output
    assert runner.invoke(main, ["plugins", "new", "units", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(main, ["plugins", "new", "units", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "exists already" in again.output


@pytest.mark.parametrize("name", ["a_", "a__b", "_a", "a_b_", "1a", "a-b", "a" * 41])
def test_plugins_new_refuses_stray_underscores_and_long_names(name: str, tmp_path: Path) -> None:
    refused = CliRunner().invoke(main, ["plugins", "new", name, "--dir", str(tmp_path)])
    assert refused.exit_code == 1 and f"{name!r} cannot name a plugin" in refused.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a", "word_count", "a_b2_c", "x" * 40])
def test_plugin_names_are_words_joined_by_single_underscores(name: str) -> None:
    assert NAME.fullmatch(name) and len(name) <= MAX_NAME


UNITS = """
from assistant import DeltaEvent, Skill, hookimpl


class Forecast(Skill):
    name = "forecast"
    examples = ("will it rain",)

    async def run(self, turn, ctx):
        yield DeltaEvent("sun")


@hookimpl
def register_skills(register):
    register(Forecast())
"""


@pytest.mark.parametrize(("name", "why"), [
    ("qa", "the installed plugin 'qa' (assistant-daemon "),
    ("guard", "the installed plugin 'guard' (assistant-daemon "),
    ("weather", "the installed plugin 'weather' (assistant-weather 0.3)"),
    ("forecast", "plugin 'weather' registers the skill 'forecast'"),
    ("daemon", "the distribution assistant-daemon "),
])
def test_plugins_new_refuses_a_name_taken_in_this_environment(
        name: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_plugin(site, "assistant_weather", UNITS, "weather", version="0.3")
    monkeypatch.syspath_prepend(str(site))
    out = tmp_path / "out"
    refused = CliRunner().invoke(main, ["plugins", "new", name, "--dir", str(out)])
    assert refused.exit_code == 1, refused.output
    assert f"the name {name!r} is taken: {why}" in refused.output
    assert "Choose another name" in refused.output and not out.exists()


def test_plugins_install_runs_pip_and_says_the_daemon_loads_it_when_it_starts(
        tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = CliRunner().invoke(main, [
        "plugins", "install", str(REPO / "examples" / "assistant-shout"), "--",
        "--target", str(site), "-q", *OFFLINE])
    assert result.exit_code == 0, result.output
    assert "the daemon is not running and loads it when it starts" in result.output
    assert (site / "assistant_shout" / "__init__.py").exists()

    failed = CliRunner().invoke(main, ["plugins", "install", str(tmp_path / "nothing-here"),
                                       "--", "-q", *OFFLINE])
    assert failed.exit_code == 1 and "pip could not install" in failed.output


CONFLICTING = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "conflicting-plugin"
version = "0.1"
dependencies = ["pydantic<2"]

[tool.setuptools]
packages = ["conflicting_plugin"]
"""


def fake_wheel(folder: Path, name: str, version: str) -> None:
    """An empty wheel of ``name`` ``version`` that pip installs from ``folder`` offline."""
    info = f"{name}-{version}.dist-info"
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"])
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def test_the_daemons_own_dependencies_are_pinned_at_their_installed_versions() -> None:
    pinned = dict(line.split("==") for line in pins())
    assert pinned["assistant-daemon"] == metadata.version("assistant-daemon")
    assert pinned["pydantic"] == metadata.version("pydantic")
    assert pinned["pydantic-core"] == metadata.version("pydantic-core")  # through pydantic
    assert "pytest" not in pinned and "ruff" not in pinned  # the dev extra's: not the daemon's


def test_plugins_install_refuses_a_plugin_that_would_move_a_daemon_dependency(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "conflicting"
    (plugin / "conflicting_plugin").mkdir(parents=True)
    (plugin / "conflicting_plugin" / "__init__.py").write_text("")
    (plugin / "pyproject.toml").write_text(CONFLICTING)
    wheels = tmp_path / "wheels"
    fake_wheel(wheels, "pydantic", "1.10.99")  # what pip would take without the pins
    offline = ["--no-index", "--no-build-isolation", "--find-links", str(wheels)]
    before = metadata.version("pydantic")

    site = tmp_path / "site"
    refused = CliRunner().invoke(main, ["plugins", "install", str(plugin), "--",
                                        "--target", str(site), *offline])
    assert refused.exit_code == 1, refused.output
    assert "pip could not install" in refused.output
    assert "dependencies pinned at their installed versions" in refused.output
    assert " -m pip install -c " in refused.output  # the command shown
    pip_said = "".join(capfd.readouterr())  # pip's own output, from its process
    assert "conflicting dependencies" in pip_said
    assert f"pydantic=={before}" in pip_said  # pip names the pin
    assert not site.exists() and metadata.version("pydantic") == before

    # Unpinned, pip would have put pydantic 1 beside the plugin.
    loose = tmp_path / "loose"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(loose),
                    *offline, str(plugin)], check=True, capture_output=True, timeout=300)
    assert (loose / "pydantic-1.10.99.dist-info").is_dir()


@pytest.mark.asyncio
async def test_a_reload_request_sets_the_daemons_restart(fake_daemon: InProcessDaemon) -> None:
    async with fake_daemon.http() as http:
        before = (await http.get("/health")).json()["started_at"]
        answer = (await http.post("/api/plugins/reload")).json()
    assert answer == {"restarting": True, "pid": os.getpid(), "started_at": before}
    assert fake_daemon.services.restart.is_set()


@pytest.mark.asyncio
async def test_a_reload_over_tcp_is_refused(fake_daemon: InProcessDaemon) -> None:
    # The routes as a TCP request reaches them (past the token): server is (host, port).
    tcp = httpx.ASGITransport(app=fake_daemon.app)
    async with httpx.AsyncClient(transport=tcp, base_url="http://127.0.0.1:8765") as http:
        answer = await http.post("/api/plugins/reload")
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "local_only" and "Unix socket" in error["message"]
    assert not fake_daemon.services.restart.is_set()


@pytest.mark.parametrize(("name", "core"), [
    ("ASSISTANT_DATA_DIR", True), ("ASSISTANT_CONFIG", True), ("ASSISTANT_MODEL", True),
    ("ASSISTANT_MODELS__PRELOAD", True), ("ASSISTANT_PLUGINS__COOLDOWN", True),
    ("ASSISTANT_SKILLS__UNITS__TABLE", False), ("ASSISTANT_UNITS_API_KEY", False),
    ("HOME", False),
])
def test_core_variables_are_the_daemons_own_settings(name: str, core: bool) -> None:
    assert core_variable(name) is core


def test_the_kits_daemon_environment_keeps_a_plugins_own_variables(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_SKILLS__UNITS__TABLE", "metric")
    monkeypatch.setenv("ASSISTANT_UNITS_API_KEY", "k")
    monkeypatch.setenv("ASSISTANT_DAEMON__TCP", "127.0.0.1:9")
    env = daemon_environment(tmp_path / "data", tmp_path / "run")
    assert env["ASSISTANT_SKILLS__UNITS__TABLE"] == "metric"
    assert env["ASSISTANT_UNITS_API_KEY"] == "k"
    assert "ASSISTANT_DAEMON__TCP" not in env
    assert env["ASSISTANT_DATA_DIR"] == str(tmp_path / "data")
