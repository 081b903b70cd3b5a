"""The FastAPI dependencies through which routes get the daemon's parts.

``create_app`` puts the :class:`~assistant.daemon.services.Services` built by the composition
root on the app; a route declares what it uses (``store: StoreDep``) and gets exactly that. A
test may hand a route module its parts with ``app.dependency_overrides``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import Depends, Request

from assistant.config import Settings
from assistant.daemon.model_manager import ModelManager
from assistant.daemon.search_gate import SearchGate
from assistant.daemon.services import Services
from assistant.daemon.status import DaemonStatus
from assistant.daemon.turns import TurnService
from assistant.errors import DaemonError, RequestError, StorageUnavailable
from assistant.json_checks import first_problem
from assistant.plugins import PluginHost
from assistant.store.repository import Store


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


def local_peer(request: Request) -> bool:
    """Whether the request came over the Unix socket (0600): this machine's user, for whom the
    daemon may read files. TCP has a port, and any process holding the token may use it."""
    server = request.scope.get("server")
    return server is None or server[1] is None


LocalPeerDep = Annotated[bool, Depends(local_peer)]


def owner(request: Request) -> int:
    """Whose request this is: 0 the daemon's owner (the Unix socket, the runtime token), else
    the id of the user whose token it carried (set by the middleware's
    :class:`~assistant.daemon.middleware.TokenGuard`). An app without the middleware (a test
    of the routes alone) is its owner's."""
    from assistant.daemon.middleware import OWNER

    found: int = request.scope.get(OWNER, 0)
    return found


OwnerDep = Annotated[int, Depends(owner)]


def owner_only(who: OwnerDep) -> None:
    """403 ``owner_only`` for a user's request: what changes the daemon for everyone, or may
    show what another's turn said (a skill's last error), is the owner's."""
    if who:
        raise RequestError(
            "only the daemon's owner may do this (over the Unix socket or with the runtime "
            "token), not a user", status=403, code="owner_only")


def settings(parts: ServicesDep) -> Settings:
    return parts.settings


def models(parts: ServicesDep) -> ModelManager:
    return parts.models


def plugins(parts: ServicesDep) -> PluginHost:
    return parts.plugins


def daemon_status(parts: ServicesDep) -> DaemonStatus:
    return parts.status


def search_gate(parts: ServicesDep) -> SearchGate:
    return parts.search


def store(parts: ServicesDep, who: OwnerDep) -> Store:
    """The open conversation store, as the request's owner sees it (their conversations and
    documents only); 503 ``storage_unavailable`` when it could not be opened (or is not open
    yet)."""
    if parts.store is None:
        raise StorageUnavailable(
            "the conversation store is unavailable; see `assistant daemon status`")
    return parts.store.owned_by(who)


async def started(parts: Services) -> TurnService:
    """The turn service once start-up is done (routing warm); 503 while it is not."""
    try:
        await asyncio.wait_for(parts.started.wait(), parts.settings.daemon.start_timeout)
    except TimeoutError:
        raise DaemonError("the daemon is still starting", "Try again in a moment.") from None
    if parts.turns is None:  # start-up failed before it was built; status says why
        raise DaemonError("the daemon is still starting", "Try again in a moment.")
    return parts.turns


async def turns(parts: ServicesDep) -> TurnService:
    return await started(parts)


async def text_only(request: Request) -> None:
    """400 for a JSON body holding a lone UTF-16 surrogate (``"\\ud800"``), naming the field.

    Python's JSON reader lets one through and no UTF-8 encoder writes it: the store, the model
    host's tokenizer or a terminal would fail later, as a 500 or a 503 that blames the model.
    Every route with a declared body gets this check (``FastAPI(dependencies=…)``); the body
    is read once and cached by the request, so the route reads the same bytes.
    """
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    if getattr(request.scope.get("route"), "body_field", None) is None:
        return  # a route that reads its own body (the import) checks the text itself
    body = await request.body()
    if b"\\u" not in body:  # raw surrogate bytes are invalid UTF-8: the route refuses those
        return
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # not JSON: the route's own parsing says so
        return
    problem = first_problem(doc)
    if problem is not None:
        field = problem[0] or None
        raise RequestError(f"{field or 'the request body'} {problem[1]}; send UTF-8 text",
                           param=field)


SettingsDep = Annotated[Settings, Depends(settings)]
ModelsDep = Annotated[ModelManager, Depends(models)]
PluginsDep = Annotated[PluginHost, Depends(plugins)]
StatusDep = Annotated[DaemonStatus, Depends(daemon_status)]
StoreDep = Annotated[Store, Depends(store)]
SearchGateDep = Annotated[SearchGate, Depends(search_gate)]
TurnsDep = Annotated[TurnService, Depends(turns)]
