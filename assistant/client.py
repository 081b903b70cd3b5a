"""The daemon client the CLI and the TUI use: HTTP over the private Unix socket.

``ensure_daemon`` starts the daemon in the background when none answers and waits until it is
healthy. HTTP errors come back as :mod:`assistant.errors` exceptions, so callers render them
like any other domain error. A connection the daemon refused (503 ``too_many_connections``,
answered before it read the request, so nothing was done) is tried again after its
Retry-After, twice at most (:class:`RetryRefused`). Streams (a turn, a re-route, ingestion)
come back as the typed events of :mod:`assistant.wire`; an event this client cannot use is
skipped (:func:`assistant.wire.parse_event`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from assistant.config import Settings
from assistant.error_codes import from_http
from assistant.errors import AssistantError, DaemonError, DaemonNotRunning
from assistant.locations import runtime_dir, socket_path
from assistant.wire import (
    INGEST_EVENTS,
    TURN_EVENTS,
    EventKinds,
    IngestEvent,
    TurnEvent,
    parse_event,
)

E = TypeVar("E")
REFUSED = "too_many_connections"


class RetryRefused(httpx.BaseTransport):
    """``inner``, sending a request again (``retries`` times at most) when the daemon
    refused its connection, after the answer's Retry-After (``max_wait`` seconds at most).
    Safe for any request: the daemon refuses a connection before reading from it."""

    def __init__(self, inner: httpx.BaseTransport, retries: int = 2,
                 max_wait: float = 5.0) -> None:
        self.inner = inner
        self.retries = retries
        self.max_wait = max_wait

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(self.retries):
            response = self.inner.handle_request(request)
            if not refused(response):
                return response
            response.close()
            time.sleep(min(_seconds(response.headers.get("retry-after")), self.max_wait))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def refused(response: httpx.Response) -> bool:
    """Whether ``response`` is the daemon's refusal of a connection (its body is read)."""
    if response.status_code != 503:
        return False
    try:
        body = json.loads(response.read())
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict) \
        and body["error"].get("code") == REFUSED


def _seconds(retry_after: str | None) -> float:
    try:
        return max(0.0, float(retry_after or 1))
    except ValueError:
        return 1.0


def raise_for_error(response: httpx.Response) -> None:
    """Raise the error an error response stands for (:func:`assistant.error_codes.from_http`)."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise from_http(response.status_code, body, response.headers,
                    fallback=response.text[:200] or response.reason_phrase)


def iter_sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a server-sent-event stream."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, "\n".join(data)


class Client:
    HEALTH_TIMEOUT_S = 5.0

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.settings = settings
        self.busy = False  # the last health() found a daemon that did not answer
        self.socket = socket_path(settings)
        self.http = httpx.Client(
            transport=RetryRefused(httpx.HTTPTransport(uds=str(self.socket))),
            base_url="http://assistant",
            timeout=httpx.Timeout(timeout, read=None),
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the daemon's life -------------------------------------------------------------------

    def health(self) -> dict[str, Any] | None:
        """The daemon's health, or None when nothing answers on the socket. A daemon that
        holds the socket but does not answer within :attr:`HEALTH_TIMEOUT_S` sets
        :attr:`busy` (its event loop is blocked): it runs, so none is started beside it."""
        self.busy = False
        try:
            response = self.http.get("/health", timeout=self.HEALTH_TIMEOUT_S)
        except httpx.TimeoutException:
            self.busy = True
            return None
        except (httpx.TransportError, OSError):
            return None
        if response.status_code != 200:
            return None
        result: dict[str, Any] = response.json()
        return result

    def ensure_daemon(self) -> dict[str, Any]:
        """Return the daemon's health, starting it in the background first if needed."""
        health = self.health()
        if health is not None:
            return health
        if self.busy:
            raise self.busy_error()
        log_path = runtime_dir(self.settings) / "daemon.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "assistant", "serve"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + self.settings.daemon.start_timeout
        while time.monotonic() < deadline:
            health = self.health()
            if health is not None:
                return health
            if proc.poll() is not None and self.health() is None:
                # It may have lost a race to another daemon that is still coming up.
                time.sleep(0.2)
                if self.health() is None and not self.socket.exists():
                    raise DaemonError(
                        "the daemon failed to start: " + _last_error(log_path),
                        f"See {log_path} for the whole log.",
                    )
            time.sleep(0.1)
        raise DaemonError(
            f"the daemon did not become healthy within {self.settings.daemon.start_timeout:.0f} s",
            f"See {log_path}.",
        )

    def require_daemon(self) -> dict[str, Any]:
        health = self.health()
        if health is None and self.busy:
            raise self.busy_error()
        if health is None:
            raise DaemonNotRunning(
                "the daemon is not running", "Start it: `assistant daemon start`."
            )
        return health

    def busy_error(self) -> DaemonError:
        log_path = runtime_dir(self.settings) / "daemon.log"
        return DaemonError(
            f"the daemon is running but busy: it did not answer within "
            f"{self.HEALTH_TIMEOUT_S:.0f} s (its event loop is blocked, often by a plugin's "
            "blocking call in a skill or hook)",
            f"See {log_path} for the plugin it names; `assistant daemon stop` stops it.")

    def reload_daemon(self) -> dict[str, Any] | None:
        """Ask the running daemon to restart in place, loading the plugins installed now, and
        wait until the new one answers; its health, or None when no daemon runs."""
        if self.health() is None:
            return None
        old = self.post("/api/plugins/reload")["started_at"]
        grace = self.settings.daemon.shutdown_grace
        deadline = time.monotonic() + grace + self.settings.daemon.start_timeout
        log_path = runtime_dir(self.settings) / "daemon.log"
        while time.monotonic() < deadline:
            health = self.health()
            if health is not None and health.get("started_at") != old \
                    and health["status"] != "starting":
                return health
            time.sleep(0.1)
        raise DaemonError(
            "the daemon did not come back after the reload: " + _last_error(log_path),
            f"See {log_path} (or the terminal of `assistant serve`); "
            "`assistant daemon start` starts it again.")

    def forget_states(self, conversation_id: str) -> bool:
        """Ask a running daemon to drop a conversation's saved model states; False if none runs."""
        if self.health() is None:
            return False
        response = self.http.delete(f"/api/conversations/{conversation_id}/states")
        return response.status_code == 204

    # -- requests ----------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params={k: v for k, v in params.items() if v is not None})
        raise_for_error(response)
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        response = self.http.post(path, json=body, params=params or None)
        raise_for_error(response)
        return response.json()

    def stream_turn(self, text: str, **fields: Any) -> Iterator[TurnEvent]:
        """The events of one turn: route, progress, delta…, then done or error."""
        body = {"text": text, **{k: v for k, v in fields.items() if v is not None}}
        yield from self.stream("/api/turns", body, TURN_EVENTS)

    def stream_reroute(self, message_id: str, skill: str, **fields: Any) -> Iterator[TurnEvent]:
        """Answer the turn of reply ``message_id`` again with ``skill`` (the daemon records the
        correction): the events of a turn."""
        body = {"skill": skill, **{k: v for k, v in fields.items() if v is not None}}
        yield from self.stream(f"/api/messages/{quote(message_id, safe='')}/reroute", body,
                               TURN_EVENTS)

    def add_documents(self, paths: list[Path]) -> Iterator[IngestEvent]:
        """Index files or folders for qa: progress and document events, then done."""
        yield from self.stream("/api/documents",
                               {"paths": [os.path.abspath(p.expanduser()) for p in paths]},
                               INGEST_EVENTS)

    def stream(self, path: str, body: dict[str, Any], kinds: EventKinds[E]) -> Iterator[E]:
        """POST ``body`` and yield the server-sent events of the answer, of ``kinds``; a
        stream that ends without its ``done`` or ``error`` event is an error, never taken for
        a complete answer."""
        with self.http.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                response.read()
                raise_for_error(response)
            for name, data in iter_sse(response.iter_lines()):
                event = parse_event(name, data, kinds)
                if event is not None:
                    yield event
                    if name in ("done", "error"):
                        return
        raise DaemonError(f"the daemon's {kinds.name} stream stopped early (no done or "
                          "error event)", f"See {runtime_dir(self.settings) / 'daemon.log'}.")


def _last_error(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines[-20:]):
        try:
            entry = json.loads(line)
        except ValueError:
            if line.startswith("error:"):
                return line[6:].strip()
            continue
        if entry.get("level") in {"error", "critical"}:
            return str(entry.get("msg"))
    return lines[-1] if lines else "no output"


def stop_daemon(settings: Settings, timeout: float | None = None) -> int | None:
    """SIGTERM the running daemon and wait for it to exit; its pid, or None if none ran."""
    import signal

    from assistant.daemon.runtime import RuntimeFiles

    files = RuntimeFiles(settings)
    pid = files.running_pid()
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + (timeout or settings.daemon.shutdown_grace + 10)
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        time.sleep(0.1)
    raise AssistantError(f"the daemon (pid {pid}) did not stop in time", "Try again, or kill it.")
