"""The daemon's listening sockets: the private Unix socket, and the optional TCP listener.

The Unix socket is created 0600 (umask at bind time) inside the 0700 runtime dir. TCP binds
127.0.0.1 unless a host is given; a non-loopback host is logged as a warning, and every TCP
request needs the token (:class:`assistant.daemon.middleware.TokenGuard`).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from assistant.errors import ConfigError, DaemonError

log = logging.getLogger("assistant.daemon")


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
