"""TCP ports on this host: one that is free now, and whether a given one is.

Glossary: a *free* port is one a listener could bind at this moment; a port left by a stopped
server's connections in TIME_WAIT counts as free (the servers adrank starts bind with
``SO_REUSEADDR``, as this check does), a live listener's does not.

A port found free can be taken by another process before the caller binds it: callers that
start servers on it retry with a new one (``EmbeddedTriton`` does).
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
