"""The running daemon: what the routes see (:class:`Daemon`), and serving it until a signal.

``serve`` takes the runtime dir (:mod:`assistant.daemon.runtime`), binds the sockets
(:mod:`assistant.daemon.sockets`), and runs the app on uvicorn with our guarded protocol
(:mod:`assistant.daemon.protocol`) until SIGTERM or SIGINT; shutdown is graceful, and a second
signal forces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from assistant import __version__
from assistant.config import Settings
from assistant.daemon.runtime import RuntimeFiles, single_instance, write_token
from assistant.errors import AssistantError, ModelNotFound, RequestError
from assistant.locations import data_dir, inside
from assistant.models.backend import GenerationParams

# RuntimeFiles is imported from here by older callers (the client); it lives in runtime.py.
__all__ = ["Daemon", "RuntimeFiles", "check_store_paths", "serve"]

HOST_INFO_TTL_S = 1.0

log = logging.getLogger("assistant.daemon")


class Daemon:
    """What the routes see: settings, models, turns, and the daemon's own state."""

    def __init__(self, settings: Settings, files: RuntimeFiles) -> None:
        from assistant.daemon.models import ModelManager
        from assistant.daemon.turns import TurnService

        self.settings = settings
        self.files = files
        self.log = log
        self.state = "starting"
        self.started_at = time.time()
        self.models = ModelManager(settings)
        self.turns = TurnService(self)
        self.token: str | None = None
        self.allowed_hosts: set[str] = set()
        self.tcp_address: str | None = None
        self.problems: list[str] = []
        self.store: Any = None
        self.app: Any = None
        self._host_info: dict[str, Any] = {}
        self._host_info_at = 0.0
        self._host_info_task: asyncio.Task[None] | None = None

    def extra_routers(self) -> list[Any]:
        from assistant.daemon import documents_api, history_api, reroute_api

        return [history_api.router, reroute_api.router, documents_api.router]

    def knows_model(self, name: str) -> bool:
        from assistant.models import registry

        if name in self.models.backends:
            return True
        try:
            registry.resolve(self.settings, name)
        except ModelNotFound:
            return False
        return True

    async def check_max_tokens(self, model: str, params: GenerationParams) -> None:
        if params.max_tokens is None:
            return
        context = await self.models.context_length(model)
        if context and params.max_tokens > context:
            raise RequestError(
                f"max_tokens: {params.max_tokens} is beyond the context of {model!r} "
                f"({context} tokens)", param="max_tokens",
            )

    async def startup(self) -> None:
        try:
            await self._startup()
        except Exception as exc:  # the daemon keeps serving what it can; status says why
            log.exception("startup failed")
            self.problems.append(f"startup failed: {exc}")
            self.state = "degraded"
            self.turns.ready.set()

    async def _startup(self) -> None:
        from assistant.store.repository import Store

        store = None
        try:
            check_store_paths(self.settings)
            store = await asyncio.to_thread(Store.open, self.settings)
            recovered = await asyncio.to_thread(store.recover)
            if recovered:
                log.warning("replies interrupted by a crash marked incomplete",
                            extra={"count": recovered})
        except AssistantError as exc:
            self.problems.append(f"conversation store unavailable: {exc}")
            log.error("conversation store unavailable", extra={"error": str(exc)})
        self.store = store
        if self.app is not None:
            self.app.state.store = store
        await self.turns.start(store)
        for name in self.settings.models.preload:
            try:
                await self.models.load(name)
            except Exception as exc:
                self.problems.append(f"preload of {name!r} failed: {exc}")
                log.error("preload failed", extra={"model": name, "error": str(exc)})
        self.state = "degraded" if self.problems else "ready"

    async def status(self) -> dict[str, Any]:
        info = await self.host_info()
        return {
            "status": self.state, "version": __version__, "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "socket": str(self.files.socket), "tcp": self.tcp_address,
            "models": self.models.status(),
            "queue_depth": sum(q.depth for q in self.models.queues.values()),
            "host_pid": self.models.host.pid, "llama_cpp": info.get("llama_cpp"),
            "state_cache": info.get("state_cache", {}),
            "threads": self.models.threads, "problems": self.problems,
        }

    async def host_info(self) -> dict[str, Any]:
        """What the model host says of itself (answered at once, even mid-reply); {} if none."""
        if self.models.host.pid is None:
            return {}
        try:
            return await asyncio.wait_for(self.models.host.call("info"), 5)
        except Exception:
            return {}

    def cached_host_info(self) -> dict[str, Any]:
        """The host's last answer to ``info``, refreshed in the background once it is older
        than :data:`HOST_INFO_TTL_S`: /health never waits on the host, which may be starting,
        busy loading or stuck."""
        stale = time.monotonic() - self._host_info_at > HOST_INFO_TTL_S
        if stale and self._host_info_task is None:
            self._host_info_task = asyncio.create_task(self._refresh_host_info())
        return self._host_info

    async def _refresh_host_info(self) -> None:
        try:
            info = await self.host_info()
            if info or self.models.host.pid is None:  # a stuck host keeps its last answer
                self._host_info = info
            self._host_info_at = time.monotonic()
        finally:
            self._host_info_task = None

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.turns.stop()
        await self.models.host.stop()
        if self.store is not None:
            self.store.close()


def check_store_paths(settings: Settings) -> None:
    """UnsafePath when the default database, or a file SQLite keeps beside it, is a symlink
    leading out of the data dir (SQLite would create or write the file where it points).
    A ``store.url`` set by the user is theirs to choose."""
    if settings.store.url:
        return
    from assistant.store.db import DB_FILENAME

    root = data_dir(settings)
    for suffix in ("", "-wal", "-shm", "-journal"):
        inside(root, root / f"{DB_FILENAME}{suffix}")


def serve(settings: Settings) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT (a second one forces)."""
    import uvicorn

    from assistant.daemon.api import create_app
    from assistant.daemon.logs import configure_logging
    from assistant.daemon.protocol import GuardedH11Protocol
    from assistant.daemon.sockets import bind_tcp, bind_unix
    from assistant.plugins import load_plugins

    configure_logging(settings.daemon.log_level)
    files = RuntimeFiles(settings)
    with single_instance(files):
        daemon = Daemon(settings, files)
        # Plugins load before the socket exists, so that strict mode stops a broken start.
        daemon.turns.plugins = load_plugins(settings)
        sockets = [bind_unix(files.socket)]
        daemon.token = write_token(files.token)
        if settings.daemon.tcp:
            tcp, daemon.allowed_hosts = bind_tcp(settings.daemon.tcp)
            sockets.append(tcp)
            daemon.tcp_address = settings.daemon.tcp
        config = uvicorn.Config(
            create_app(daemon), http=GuardedH11Protocol, log_config=None, access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(settings.daemon.shutdown_grace)),
            timeout_keep_alive=5, h11_max_incomplete_event_size=64 * 1024,
        )
        asyncio.run(_run(daemon, _server_class()(config), sockets))


def _server_class() -> Any:
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server with loop signal handlers that do not re-raise the signal.

        uvicorn re-raises SIGTERM after a graceful shutdown, which would make the exit status
        -15; a daemon stopped on purpose exits 0. A second signal still forces the exit.
        """

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit:  # a second SIGTERM or SIGINT: stop waiting, exit now
                self.force_exit = True
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            handled = (signal.SIGINT, signal.SIGTERM)
            for sig in handled:
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in handled:
                    loop.remove_signal_handler(sig)

    return Server


async def _run(daemon: Daemon, server: Any, sockets: list[socket.socket]) -> None:
    log.info("daemon starting", extra={"socket": str(daemon.files.socket),
                                       "tcp": daemon.tcp_address, "version": __version__})
    reaper = asyncio.create_task(daemon.models.reap_idle())
    starting = asyncio.create_task(daemon.startup())
    try:
        await server.serve(sockets=sockets)
    finally:
        for task in (reaper, starting):
            task.cancel()
        if server.force_exit:
            daemon.models.host.kill()
        await daemon.shutdown()
        log.info("daemon stopped")
