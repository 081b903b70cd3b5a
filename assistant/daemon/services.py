"""The daemon's parts, built once and handed to whatever uses them.

:func:`assistant.daemon.server.serve` is the composition root: it builds :class:`Services` (the
model manager, the plugin host, clients' embedding jobs, the search gate, the status), and its
start-up (:func:`~assistant.daemon.server.start`) opens the store and builds the router and the
:class:`~assistant.daemon.turns.TurnService`. Routes reach the parts through the FastAPI
dependencies of :mod:`assistant.daemon.deps`; nothing holds a reference back to the whole.
Plugins' ``startup`` and ``shutdown`` hooks receive this object as ``daemon``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from assistant.daemon.embeddings import EmbeddingJobs
from assistant.daemon.search_gate import SearchGate
from assistant.daemon.status import Access, DaemonStatus
from assistant.daemon.watchdog import LoopWatchdog

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.daemon.model_manager import ModelManager
    from assistant.daemon.runtime import RuntimeFiles
    from assistant.daemon.turns import TurnService
    from assistant.plugins import PluginHost
    from assistant.store.repository import Store


class Services:
    """Settings, models, plugins and status from the start; the store and the turn service
    once start-up has opened and built them (``started`` is set then, also when it failed)."""

    def __init__(self, settings: Settings, files: RuntimeFiles, models: ModelManager,
                 plugins: PluginHost, access: Access | None = None) -> None:
        self.settings = settings
        self.files = files
        self.models = models
        self.plugins = plugins
        self.access = access or Access()
        self.embeddings = EmbeddingJobs(models, settings.embeddings)
        self.search = SearchGate(settings.search)
        self.watchdog = LoopWatchdog(plugins.owner)  # started by the server, on its loop
        self.status = DaemonStatus(models, files.socket, self.access,
                                   lambda: [*plugins.problems(), *self.watchdog.problems(),
                                            *models.engines.problems()])
        self.store: Store | None = None
        self.turns: TurnService | None = None
        self.started = asyncio.Event()
        # Set by POST /api/plugins/reload: the server stops as on SIGTERM (in-flight replies
        # finish) and starts again in the same process, loading the plugins installed now.
        self.restart = asyncio.Event()

    async def user_of(self, token: str) -> int | None:
        """The id of the user whose token this is (``assistant users add``), None when no
        user not revoked has it. Asked on every TCP request that does not carry the runtime
        token, so that a revoke holds from the next request; a token of another shape never
        reaches the database."""
        from assistant.store.users import TOKEN_PREFIX

        if not token.startswith(TOKEN_PREFIX):
            return None
        store = self.store
        if store is None:
            from assistant.errors import StorageUnavailable

            raise StorageUnavailable(
                "the user store is unavailable, so a user's token cannot be checked; "
                "see `assistant daemon status`")
        user = await asyncio.to_thread(store.users.authenticate, token)
        return None if user is None else user.id
