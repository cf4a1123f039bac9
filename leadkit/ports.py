"""Whether a TCP port on a host can be listened on, checked before a command prints a URL that would not work."""

from __future__ import annotations

import errno
import socket

from leadkit.errors import ConfigError

__all__ = ["ensure_port_free"]


def ensure_port_free(host: str, port: int, *, option: str, what: str) -> None:
    """Return when `port` on `host` can be bound now (as a server binds it: SO_REUSEADDR, so a port only in
    TIME_WAIT counts as free); else ConfigError (exit 2) naming the port, `what` wanted it, and `option`, the
    option that picks another. Port 0 (any free port) is always free."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                message = f"port {port} on {host} is taken (another program listens there), so {what} cannot start"
            elif exc.errno == errno.EACCES:
                message = f"port {port} on {host} may not be used by this user, so {what} cannot start"
            else:
                message = f"{host}:{port} cannot be bound ({exc.strerror or exc}), so {what} cannot start"
            raise ConfigError(
                message,
                hint=f"Pick another port with {option} N (e.g. {option} {port + 1 if port < 65535 else 8889}), "
                "or stop the program that uses it.",
            ) from None
