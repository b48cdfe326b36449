"""The server's listening sockets: several on one port, so that a busy event loop still
accepts connections as fast as they arrive.

libuv, under uvloop, accepts one connection per listening socket per loop iteration (since
libuv 1.45, libuv/libuv#3696). When thousands of streams are open an iteration takes a
hundred milliseconds or more, so one socket accepts a handful of connections a second while
the rest wait in the kernel's queue, and their streams get no first token for many seconds.
Linux spreads new connections over the sockets bound to one port with SO_REUSEPORT, and the
loop accepts from each of them every iteration: with N sockets it accepts N connections per
iteration instead of one.
"""

from __future__ import annotations

import socket

# Sockets per server. Enough to take a burst of thousands of clients within about two seconds
# while the loop is busy streaming to the ones already in; each costs one file descriptor and
# nothing while no connection waits on it.
LISTENERS = 64


class ListenError(Exception):
    """The address cannot be listened on (in use, not local, not permitted)."""


def bind_listeners(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """`count` listening TCP sockets sharing `host:port` (port 0: one free port for all).

    The port is first bound alone, without SO_REUSEPORT: a port another server listens on
    is refused, as a single socket would be, instead of silently shared with it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        port = _check_free(family, host, port)
        listeners: list[socket.socket] = []
        try:
            for _ in range(count):
                sock = socket.socket(family, socket.SOCK_STREAM)
                listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, port))
                sock.listen(backlog)
                sock.setblocking(False)
        except BaseException:
            for sock in listeners:
                sock.close()
            raise
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return listeners


def _check_free(family: socket.AddressFamily, host: str, port: int) -> int:
    """Bind `host:port` once without SO_REUSEPORT and let go; return the port it got."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        bound: int = probe.getsockname()[1]
        return bound
