"""Importing the core and running the light commands loads no heavy runtime (in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("llama_cpp", "onnxruntime", "spacy", "textual")

PROBE = """
import json, sys
{body}
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""

RUN_CLI = """
from assistant.cli import main
try:
    main({args!r})
except SystemExit:
    pass
"""


def loaded_after(body: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)],
        cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    result: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_import_assistant_is_light() -> None:
    assert loaded_after("import assistant") == []


@pytest.mark.parametrize("args", [["--help"], ["models", "--help"], ["models", "list"],
                                  ["models", "show", "minilm-l6", "--json"]])
def test_cli_commands_stay_light(args: list[str]) -> None:
    assert loaded_after(RUN_CLI.format(args=args)) == []


CORE = ("assistant.plugins", "assistant.routing", "assistant.skills", "assistant.context",
        "assistant.config", "assistant.store", "assistant.error_codes", "assistant.client")


def test_the_core_loads_no_web_framework_ui_or_model_runtime() -> None:
    body = f"import importlib\nfor name in {CORE!r}:\n    importlib.import_module(name)"
    probe = PROBE.replace("heavy = {heavy!r}", "heavy = {heavy!r} + ('fastapi', 'starlette')")
    proc = subprocess.run(
        [sys.executable, "-c", probe.format(body=body, heavy=HEAVY)],
        cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
