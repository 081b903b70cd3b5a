"""The composition root: :func:`serve` builds the daemon's parts and runs them until a signal.

``serve`` takes the runtime dir (:mod:`assistant.daemon.runtime`), loads the plugins, builds the
model manager and the :class:`~assistant.daemon.services.Services` the routes get as
dependencies, binds the sockets (:mod:`assistant.daemon.sockets`), sets the connection budgets
(:mod:`assistant.daemon.connections`), and runs the app on uvicorn
with our guarded protocol (:mod:`assistant.daemon.protocol`) until SIGTERM or SIGINT; shutdown
is graceful, and a second signal forces it. :func:`start`, run once the socket answers, opens
the store and builds the router and the turn service. A reload (``POST /api/plugins/reload``)
stops it the same graceful way, then replaces the process with a fresh ``serve`` (same pid,
arguments and environment), which loads the plugins installed by then and keeps the TCP
token. A signal during the reload's grace makes it a plain graceful stop: no start after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assistant import __version__
from assistant.config import Settings
from assistant.daemon.connections import ConnectionLimits
from assistant.daemon.model_manager import ModelManager
from assistant.daemon.runtime import (
    RuntimeFiles,
    kept_token,
    mark_reload,
    reloaded,
    single_instance,
    write_token,
)
from assistant.daemon.services import Services
from assistant.daemon.status import Access
from assistant.errors import AssistantError
from assistant.locations import data_dir, inside
from assistant.plugins import PluginHost

__all__ = ["build", "check_store_paths", "connection_limits", "serve", "start", "stop"]

log = logging.getLogger("assistant.daemon")


def build(settings: Settings, plugins: PluginHost, files: RuntimeFiles | None = None,
          access: Access | None = None) -> Services:
    """The parts that exist from the start: the model manager (with the plugins' backends),
    the plugin host and the status. The store and the turn service come with :func:`start`."""
    models = ModelManager(settings)
    for backend in plugins.backends:
        models.add_backend(backend, plugins.backend_plugin.get(id(backend)))
    models.backends.on_result = plugins.backend_result
    if settings.engines:
        from assistant.models.remote import RemoteEngine

        for name, engine in settings.engines.items():
            models.engines.add(RemoteEngine(name, engine))
    plugins.configure_guards(settings.guards)
    return Services(settings, files or RuntimeFiles(settings), models, plugins, access)


async def start(services: Services) -> None:
    """Open the store, build the router and the turn service, warm routing, preload models.

    A failure leaves the daemon serving what it can (``degraded``); status says why.
    """
    status = services.status
    try:
        await _start(services)
    except Exception as exc:
        log.exception("startup failed")
        status.problems.append(f"startup failed: {exc}")
        status.state = "degraded"
    finally:
        services.started.set()


async def _start(services: Services) -> None:
    from assistant.daemon.turns import TurnService
    from assistant.routing import Router

    settings, status, models = services.settings, services.status, services.models
    services.store = store = await _open_store(settings, status.problems)
    documents = searches = None
    if store is not None:
        from assistant.documents.search import SearchPerOwner

        searches = SearchPerOwner(store, models.embedder(settings.models.embedding),
                                  limits=settings.search)
        documents = searches(0)
    router = Router(
        services.plugins.available_skills(), models.embedder(settings.models.embedding),
        corrections_path=data_dir(settings) / "routing-corrections.json",
        cache_path=_routing_cache(settings),
    )
    services.turns = TurnService(settings, models, services.plugins, router, store,
                                 documents=documents, documents_of=searches)
    status.problems.extend(await services.plugins.acall("startup", daemon=services))
    try:
        await router.warm()
    except AssistantError as exc:
        status.problems.append(f"semantic routing is off: {exc.message}")
    finally:
        services.started.set()
    for name in settings.models.preload:
        try:
            await models.load(name)
        except Exception as exc:
            status.problems.append(f"preload of {name!r} failed: {exc}")
            log.error("preload failed", extra={"model": name, "error": str(exc)})
    status.state = "degraded" if status.problems else "ready"


async def _open_store(settings: Settings, problems: list[str]) -> Any:
    from assistant.store.repository import Store

    try:
        check_store_paths(settings)
        store = await asyncio.to_thread(Store.open, settings)
        recovered = await asyncio.to_thread(store.recover)
    except AssistantError as exc:
        problems.append(f"conversation store unavailable: {exc}")
        log.error("conversation store unavailable", extra={"error": str(exc)})
        return None
    if recovered:
        log.warning("replies interrupted by a crash marked incomplete",
                    extra={"count": recovered})
    return store


def _routing_cache(settings: Settings) -> Path | None:
    """Where the router keeps the example embeddings of this embedding model file."""
    from assistant.models import registry

    try:
        record = registry.resolve(settings, settings.models.embedding)
        info = record.path.stat()
    except (AssistantError, OSError):
        return None
    key = f"{record.name}-{info.st_size}-{info.st_mtime_ns}".encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    return data_dir(settings) / f"routing-examples-{digest}.json"


async def stop(services: Services) -> None:
    with contextlib.suppress(Exception):
        await services.plugins.acall("shutdown", daemon=services)
    # The host saves the model state of each conversation it holds before it exits.
    await services.models.host.stop(timeout=15.0)
    await services.models.engines.close()
    if services.store is not None:
        services.store.close()


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
    """Run the daemon in the foreground until SIGTERM or SIGINT (a second one forces); after a
    reload request, start over in this process once the old daemon has stopped."""
    import uvicorn

    from assistant.daemon.api import create_app
    from assistant.daemon.connections import ACCEPT_BATCH, ConnectionBudget
    from assistant.daemon.logs import configure_logging
    from assistant.daemon.protocol import guarded_protocol
    from assistant.daemon.sockets import bind_tcp, bind_unix
    from assistant.models.cpu import planned
    from assistant.plugins import load_plugins

    again = reloaded()  # first: no child process may inherit the mark
    configure_logging(settings.daemon.log_level)
    planned(settings.models.cpu_variant)  # a variant this machine cannot run stops the start
    files = RuntimeFiles(settings)
    with single_instance(files) as leftovers:
        # Plugins load before the socket exists, so that strict mode stops a broken start.
        plugins = load_plugins(settings)
        sockets = [bind_unix(files.socket)]
        # A reload keeps the token the TCP clients hold; a start makes a new one.
        kept = kept_token(files.token) if again else None
        access = Access(token=kept or write_token(files.token))
        if settings.daemon.tcp:
            tcp, access.allowed_hosts = bind_tcp(settings.daemon.tcp)
            sockets.append(tcp)
            access.tcp_address = settings.daemon.tcp
        services = build(settings, plugins, files, access)
        budget = ConnectionBudget(connection_limits(settings, services.status.problems))
        config = uvicorn.Config(
            create_app(services), http=guarded_protocol(budget), log_config=None,
            access_log=False, lifespan="off", backlog=ACCEPT_BATCH,
            timeout_graceful_shutdown=max(1, int(settings.daemon.shutdown_grace)),
            timeout_keep_alive=5, h11_max_incomplete_event_size=64 * 1024,
        )
        restart = asyncio.run(_run(services, _server_class()(config), sockets))
        if restart:
            leftovers.remove(files.token)
    if restart:
        _exec_again()


def _exec_again() -> None:
    """Replace this process with the command that started it. Python's own descriptors are not
    inherited (PEP 446), so the lock, the sockets and the store are closed; stdout and stderr,
    where the log goes, are kept."""
    log.info("daemon restarting to reload plugins")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    mark_reload()
    os.execv(sys.executable, sys.orig_argv)


def connection_limits(settings: Settings, problems: list[str]) -> ConnectionLimits:
    """The configured connection budgets, with this process's open-file limit raised to hold
    them; under a hard limit too low for that, smaller budgets, and a problem saying so."""
    from assistant.daemon.connections import ConnectionLimits, open_file_limit

    daemon = settings.daemon
    wanted = ConnectionLimits(
        tcp=daemon.max_tcp_connections if daemon.tcp else 0,
        tcp_per_peer=daemon.max_tcp_connections_per_peer, unix=daemon.max_unix_connections)
    open_files = open_file_limit(wanted.open_files())
    limits = wanted.within(open_files)
    log.info("connection budgets", extra={"tcp": limits.tcp, "tcp_per_peer": limits.tcp_per_peer,
                                          "unix": limits.unix, "open_files": open_files})
    if limits != wanted:
        problem = (f"the open-file limit ({open_files}) is below the {wanted.open_files()} "
                   f"the connection budgets need: holding at most {limits.tcp} TCP and "
                   f"{limits.unix} Unix-socket connections; raise the hard limit "
                   "(ulimit -Hn, LimitNOFILE=) or lower daemon.max_*_connections")
        log.warning(problem)
        problems.append(problem)
    return limits


def _server_class() -> Any:
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server with loop signal handlers that do not re-raise the signal.

        uvicorn re-raises SIGTERM after a graceful shutdown, which would make the exit status
        -15; a daemon stopped on purpose exits 0. A second signal still forces the exit.
        ``reloading`` is set while a reload stops the server: a signal then is the first
        one, a graceful stop with no start after it.
        """

        reloading = False
        acceptors: tuple[Any, ...] = ()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            """uvicorn's startup, then the TCP listeners handed to an :class:`Acceptor`
            each: the connection budget decides before asyncio builds a connection."""
            from assistant.daemon.acceptor import Acceptor

            self.acceptors = ()
            await super().startup(sockets)
            protocol: Any = self.config.http_protocol_class
            if getattr(protocol, "budget", None) is None:
                return
            assert self.config.ssl is None, "the acceptor makes plain connections only"

            def factory() -> Any:
                return protocol(config=self.config, server_state=self.server_state,
                                app_state=self.lifespan.state)

            loop = asyncio.get_running_loop()
            for sock in sockets or []:
                if sock.family != socket.AF_UNIX:
                    acceptor = Acceptor(loop, sock, protocol.budget, factory)
                    acceptor.start()
                    self.acceptors += (acceptor,)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for acceptor in self.acceptors:  # before uvicorn shuts the connections it has
                acceptor.close()
            await super().shutdown(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.reloading:  # stop once in-flight replies finish, and stay stopped
                self.reloading = False
                log.info("stop requested during a reload: stopping, not starting again")
            elif self.should_exit:  # a second SIGTERM or SIGINT: stop waiting, exit now
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


async def _run(services: Services, server: Any, sockets: list[socket.socket]) -> bool:
    """Serve until a signal or a reload request; True when the daemon should start again."""
    log.info("daemon starting", extra={"socket": str(services.files.socket),
                                       "tcp": services.access.tcp_address,
                                       "version": __version__})
    reaper = asyncio.create_task(services.models.reap_idle())
    engines = asyncio.create_task(services.models.engines.watch())
    starting = asyncio.create_task(start(services))
    restarting = asyncio.create_task(_stop_on_restart(services, server))
    services.watchdog.start()
    try:
        await server.serve(sockets=sockets)
    finally:
        services.watchdog.stop()
        for task in (reaper, engines, starting, restarting):
            task.cancel()
        if server.force_exit:
            services.models.host.kill()
        await stop(services)
        log.info("daemon stopped")
    return bool(server.reloading) and not server.force_exit


async def _stop_on_restart(services: Services, server: Any) -> None:
    await services.restart.wait()
    if server.should_exit:  # a signal came first: the daemon stops, it does not reload
        return
    log.info("reload requested: stopping once in-flight replies have finished")
    server.reloading = True
    server.should_exit = True
