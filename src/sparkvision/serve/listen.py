"""The service's listening socket, bound before the server starts (so ``--port 0`` prints its real port)."""

from __future__ import annotations

import ipaddress
import socket

from ..errors import ConfigError

__all__ = ["bind", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable only from this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening, inheritable TCP socket on ``host:port``; :class:`ConfigError` when the address is
    taken or not ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
