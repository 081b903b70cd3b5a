"""The example third-party plugin installs, is discovered, and its skill runs end to end.

Here the skill runs through the real plugin host and BackendContext on the fake model, in a
fresh interpreter that sees the package only through its installed entry point; the run through
the real daemon is tests/integration/test_plugin_example_daemon.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, json
from assistant.plugins import PluginHost
from assistant.skills import Turn
from assistant.testing import FakeBackend, fake_context

host = PluginHost()
host.load_entry_points()
info = {i.name: i.to_dict() for i in host.info()}

async def go():
    ctx = fake_context(FakeBackend(["so loud"]))
    return [e async for e in host.run_skill("shout", Turn("hello"), ctx)]

events = asyncio.run(go())
print(json.dumps({"info": info["shout"],
                  "text": "".join(getattr(e, "text", "") for e in events),
                  "last": events[-1].status}))
"""


def test_example_plugin_is_discovered_and_runs(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
         "--target", str(target), str(REPO / "examples" / "assistant-shout")],
        check=True, capture_output=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["info"]["status"] == "loaded"
    assert result["info"]["bundled"] is False and result["info"]["version"] == "0.1.0"
    assert result["info"]["skills"] == ["shout"]
    assert result["text"] == "HELLO\nso loud" and result["last"] == "complete"
