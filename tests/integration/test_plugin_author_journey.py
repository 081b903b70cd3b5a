"""A plugin author's journey (issue 20), in a fresh virtual environment beside the project.

The venv gets this project from a copy of the source (as a user's ``pip install`` would leave
it) and sees the dev venv's packages through a ``.pth`` file, so nothing comes from the network:
every pip call here is ``--no-index``. Then, as an author would: ``plugins new`` →
``plugins install -e`` (the running daemon reloads itself) → the scaffold's own tests pass → the
daemon serves the skill → an edit and ``plugins reload`` → its raise shows in the log and
``/api/plugins`` → its breaker trips: turns for it fall back with a notice while the plugin's
other skill works, ``plugins list`` and ``daemon status`` say so → ``plugins enable`` re-arms it.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.testing import RunningDaemon, daemon_environment
from tests.conftest import REPO, TEST_MODELS_DIR
from tests.integration.conftest import CHAT_MODEL, require_models

pytestmark = pytest.mark.integration

OFFLINE = ("--no-index", "--no-build-isolation")


def project_name() -> str:
    import tomllib

    name: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
    return name


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding this project (built from a copy of its source, no dependencies
    installed: those of the dev venv are seen through a .pth file). Its bin dir."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    bin_dir = root / "venv" / "bin"
    purelib = subprocess.run(
        [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "dev-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # ensurepip's setuptools may be older than the build needs: the dev venv's is used.
    pip(bin_dir, "uninstall", "-q", "-y", "setuptools")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "assistant", source / "assistant", ignore=ignore)
    shutil.copytree(REPO / "plugins", source / "plugins", ignore=ignore)
    pip(bin_dir, "install", "-q", "--no-deps", *OFFLINE, str(source))
    yield bin_dir


def venv_env(bin_dir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (else this process's) for commands of the venv: its bin first on PATH, no
    PYTHONPATH (the venv's copy of the project is the one imported)."""
    env = dict(os.environ if env is None else env)
    env.pop("PYTHONPATH", None)
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def pip(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(bin_dir / "python"), "-m", "pip", *args], env=venv_env(bin_dir),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_example_plugin_installs_with_nothing_unrelated(venv: Path, tmp_path: Path) -> None:
    """Its dependency is this project's own distribution name, which the venv holds: pip has
    nothing to fetch (``assistant`` on the registry is an unrelated project)."""
    example = tmp_path / "assistant-shout"
    shutil.copytree(REPO / "examples" / "assistant-shout", example)
    assert project_name() != "assistant"
    assert f'dependencies = ["{project_name()}"]' in (example / "pyproject.toml").read_text()
    report = tmp_path / "report.json"
    pip(venv, "install", "--dry-run", "--report", str(report), *OFFLINE, str(example))
    installs = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert installs == ["assistant-shout"]
    pip(venv, "install", "-q", *OFFLINE, str(example))
    shown = pip(venv, "show", "assistant-shout").stdout
    assert f"Requires: {project_name()}" in shown


def test_new_install_serve_fail_trip_and_re_arm(
        venv: Path, tmp_path: Path, short_tmp: Path) -> None:
    require_models()
    env = venv_env(venv, daemon_environment(
        tmp_path / "data", short_tmp / "run", model=CHAT_MODEL, models_dir=TEST_MODELS_DIR,
        extra_env={"ASSISTANT_PLUGINS__MAX_FAILURES": "2", "ASSISTANT_PLUGINS__COOLDOWN": "0"}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "assistant"), *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    made = cli("plugins", "new", "units")
    assert made.returncode == 0, made.stderr
    plugin = tmp_path / "assistant-units"
    assert (plugin / "pyproject.toml").exists()
    assert f'dependencies = ["{project_name()}"]' in (plugin / "pyproject.toml").read_text()

    from assistant.testing import start_daemon

    daemon = start_daemon(env, tmp_path / "daemon.log", python=venv / "python")
    try:
        first_pid = daemon.proc.pid
        installed = cli("plugins", "install", "-e", str(plugin), "--", *OFFLINE)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "daemon reloaded" in installed.stdout and "units" in installed.stdout

        tests = subprocess.run([str(venv / "python"), "-m", "pytest", "-q", "-p",
                                "no:cacheprovider", f"--basetemp={tmp_path / 'pytest'}"],
                               cwd=plugin, env=venv_env(venv),
                               capture_output=True, text=True, timeout=300)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert "2 passed" in tests.stdout

        # No manual restart: the daemon (same pid, restarted in place) serves the new skill.
        assert daemon.proc.poll() is None and daemon.proc.pid == first_pid
        events = turn(daemon, "/units hello there")
        assert events[0]["skill"] == "units" and events[-1]["status"] == "complete"
        assert text_of(events).startswith("2 words\n")
        assert "units answered" in daemon.log_text()  # the scaffold's after_turn hook

        # An edit of the editable install, then a reload: a skill that raises, and another.
        source = plugin / "assistant_units" / "__init__.py"
        code = source.read_text()
        code = code.replace("        words = len(turn.text.split())\n",
                            "        if 'boom' in turn.text:\n"
                            "            raise RuntimeError('units exploded')\n"
                            "        words = len(turn.text.split())\n")
        code = code.replace("    register(Units())\n",
                            "    register(Units())\n    register(Echo())\n")
        code += ("\n\nclass Echo(Skill):\n    name = 'units_echo'\n"
                 "    examples = ('echo this back',)\n\n"
                 "    async def run(self, turn, ctx):\n        yield DeltaEvent(turn.text)\n")
        source.write_text(code)
        reloaded = cli("plugins", "reload")
        assert reloaded.returncode == 0 and "daemon reloaded" in reloaded.stdout, reloaded.stderr

        for _ in range(2):
            failed = turn(daemon, "/units boom")
            assert failed[-1]["type"] == "error" and "units exploded" in failed[-1]["message"]
        log = daemon.log_text()
        assert "Traceback" in log and "RuntimeError: units exploded" in log
        with daemon.http() as http:
            plugins = {p["name"]: p for p in http.get("/api/plugins").json()["plugins"]}
        health = plugins["units"]["health"]["units"]
        assert health["state"] == "disabled" and "units exploded" in health["traceback"]

        fallback = turn(daemon, "/units boom", max_tokens=4)
        assert fallback[0]["method"] == "fallback" and fallback[0]["skill"] == "chat"
        assert any(e["type"] == "notice" and "'units' is disabled" in e["message"]
                   for e in fallback)
        assert fallback[-1]["type"] == "done" and fallback[-1]["status"] == "complete"
        assert text_of(turn(daemon, "/units_echo still here")) == "still here"

        listed = cli("plugins", "list")
        assert "units (disabled after 2 failures" in listed.stdout, listed.stdout
        assert "units_echo" in listed.stdout
        status = cli("daemon", "status")
        assert "problem" in status.stdout and "'units'" in status.stdout

        enabled = cli("plugins", "enable", "units")
        assert enabled.returncode == 0 and "units" in enabled.stdout
        again = turn(daemon, "/units hello there")
        assert again[0]["skill"] == "units" and text_of(again).startswith("2 words\n")
        assert "problem" not in cli("daemon", "status").stdout
    finally:
        daemon.stop()


def turn(daemon: RunningDaemon, text: str, max_tokens: int = 4) -> list[dict[str, object]]:
    events = []
    with daemon.http() as http, http.stream("POST", "/api/turns", json={
            "text": text, "max_tokens": max_tokens, "temperature": 0}) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


def text_of(events: list[dict[str, object]]) -> str:
    return "".join(str(e["text"]) for e in events if e["type"] == "delta")
