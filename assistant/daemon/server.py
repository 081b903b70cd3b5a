"""The daemon's lifecycle: one instance per runtime dir, private sockets, graceful shutdown.

A lock file held for the daemon's life makes two daemons started at once resolve to exactly
one; the loser reports the winner. A socket or pid left by a killed daemon is stale whenever the
lock is free, and is replaced. The Unix socket is created 0600 (umask at bind time) inside a
0700 directory; the optional TCP listener needs the bearer token written to ``token``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from assistant import __version__
from assistant.config import Settings
from assistant.errors import (
    AssistantError,
    ConfigError,
    DaemonError,
    ModelNotFound,
    RequestError,
)
from assistant.locations import runtime_dir, socket_path
from assistant.models.backend import GenerationParams

log = logging.getLogger("assistant.daemon")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    _plain: ClassVar[set[str]] = set(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items()
                      if k not in self._plain and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")


class RuntimeFiles:
    """The lock, pid, socket and token files of one runtime dir."""

    def __init__(self, settings: Settings) -> None:
        self.dir = runtime_dir(settings)
        self.lock = self.dir / "assistant.lock"
        self.pid = self.dir / "assistant.pid"
        self.socket = socket_path(settings)
        self.token = self.dir / "token"
        self.log = self.dir / "daemon.log"

    def running_pid(self) -> int | None:
        try:
            return int(self.pid.read_text().strip())
        except (OSError, ValueError):
            return None


@contextlib.contextmanager
def single_instance(files: RuntimeFiles) -> Iterator[None]:
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = files.running_pid()
            raise DaemonError(
                f"the daemon is already running (pid {pid}, socket {files.socket})",
                "Use `assistant daemon status`, or `assistant daemon stop` first.",
            ) from None
        # The lock is ours, so any socket or pid file here is left over from a killed daemon.
        for stale in (files.socket, files.pid):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        files.pid.write_text(f"{os.getpid()}\n")
        try:
            yield
        finally:
            for path in (files.socket, files.pid, files.token):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    finally:
        os.close(fd)


def bind_unix(path: Path) -> socket.socket:
    if len(os.fsencode(path)) >= 104:
        raise ConfigError(
            f"the socket path {path} is too long for a Unix socket",
            "Set ASSISTANT_RUNTIME_DIR to a shorter directory.",
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # 0600 from the moment the socket exists, not after a chmod
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(512)
    sock.setblocking(False)
    return sock


def bind_tcp(spec: str) -> tuple[socket.socket, set[str]]:
    host, _, port_text = spec.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"daemon.tcp = {spec!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    port = int(port_text)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DaemonError(f"cannot listen on {spec}: {exc.strerror}") from None
    sock.listen(512)
    sock.setblocking(False)
    if not _is_loopback(host):
        log.warning("TCP listener is not on loopback; it still requires the token",
                    extra={"address": spec})
    port = sock.getsockname()[1]
    names = {"127.0.0.1", "localhost", "[::1]", host}
    return sock, {f"{n}:{port}" for n in names} | names


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def write_token(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


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

    def extra_routers(self) -> list[Any]:
        from assistant.daemon import history_api, reroute_api

        return [history_api.router, reroute_api.router]

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
        context = self.context_length(model)
        if context and params.max_tokens > context:
            raise RequestError(
                f"max_tokens: {params.max_tokens} is beyond the context of {model!r} "
                f"({context} tokens)", param="max_tokens",
            )

    def context_length(self, model: str) -> int:
        resident = self.models.resident.get(model)
        if resident is not None and resident.info.get("n_ctx"):
            return int(resident.info["n_ctx"])
        if self.settings.models.context_length:
            return self.settings.models.context_length
        for info in self.models.models():
            if info.name == model:
                return info.context_length
        return 0

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

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.turns.stop()
        await self.models.host.stop()
        if self.store is not None:
            self.store.close()


def serve(settings: Settings) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT (a second one forces)."""
    import uvicorn

    from assistant.daemon.api import create_app
    from assistant.daemon.protocol import GuardedH11Protocol
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
