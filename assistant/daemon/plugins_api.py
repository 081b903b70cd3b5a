"""The daemon's own view of its plugins: what loaded, how each skill is doing, re-arming one,
and reloading them all.

``assistant plugins list``, ``enable`` and ``reload`` use these when the daemon runs: the
breakers live in the daemon, so only it can say that a skill is disabled, and why. Listing
and re-arming are the owner's (403 ``owner_only`` for a user's token: a skill's last error may
quote another's turn); reloading is the Unix socket's alone.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Depends

from assistant.daemon.deps import LocalPeerDep, PluginsDep, ServicesDep, owner_only
from assistant.errors import RequestError

router = APIRouter(prefix="/api/plugins", tags=["plugins"])


@router.get("", dependencies=[Depends(owner_only)])
async def plugins(host: PluginsDep) -> dict[str, Any]:
    """Every plugin: status, version, hooks, skills, models, and each skill's health (state,
    failures in a row, last error and its traceback, seconds until the next trial)."""
    return {"plugins": [info.to_dict() for info in host.info()], "problems": host.problems()}


@router.post("/{name}/enable", dependencies=[Depends(owner_only)])
async def enable(name: str, host: PluginsDep) -> dict[str, Any]:
    """Re-arm skill ``name``, or every skill and the hooks of plugin ``name``."""
    return {"name": name, "enabled": host.enable(name)}


@router.post("/reload")
async def reload(parts: ServicesDep, local: LocalPeerDep) -> dict[str, Any]:
    """Restart the daemon in place to load the plugins installed now (and the new code of one
    installed editable). It stops accepting connections, lets in-flight replies finish (up to
    ``daemon.shutdown_grace``), then starts again with the same pid; ``/health``'s
    ``started_at`` tells the new daemon from the old. Over the Unix socket only: a TCP token
    holder may use the daemon, not restart it (nor have it run newly installed code)."""
    if not local:
        raise RequestError(
            "the daemon is reloaded by this machine's user only: use the Unix socket "
            "(`assistant plugins reload`)", status=403, code="local_only")
    parts.restart.set()
    return {"restarting": True, "pid": os.getpid(), "started_at": parts.status.started_at}
