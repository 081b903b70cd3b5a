"""The daemon's own view of its plugins: what loaded, how each skill is doing, re-arming one.

``assistant plugins list`` and ``assistant plugins enable`` use these when the daemon runs: the
breakers live in the daemon, so only it can say that a skill is disabled, and why.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from assistant.daemon.deps import PluginsDep

router = APIRouter(prefix="/api/plugins", tags=["plugins"])


@router.get("")
async def plugins(host: PluginsDep) -> dict[str, Any]:
    """Every plugin: status, version, hooks, skills, models, and each skill's health (state,
    failures in a row, last error and its traceback, seconds until the next trial)."""
    return {"plugins": [info.to_dict() for info in host.info()], "problems": host.problems()}


@router.post("/{name}/enable")
async def enable(name: str, host: PluginsDep) -> dict[str, Any]:
    """Re-arm skill ``name``, or every skill and the hooks of plugin ``name``."""
    return {"name": name, "enabled": host.enable(name)}
