"""The two guards of a server without keys (DESIGN.md §7, `STREAMCHAT_AUTH=off`).

A server on 127.0.0.1 without keys still faces the browser of whoever runs it:
- DNS rebinding: a page on `evil.example` whose name is made to resolve to 127.0.0.1 is
  same-origin with our server in the browser's eyes, but its requests carry
  `Host: evil.example`. Only the allowed hosts are served (`STREAMCHAT_ALLOWED_HOSTS`;
  the loopback names, with any port, by default on loopback).
- Cross-site requests: any page may POST a form or a `fetch` to 127.0.0.1. A state-changing
  request (POST, PUT, PATCH, DELETE) whose `Origin` is not the server's own, nor listed in
  `STREAMCHAT_CORS_ORIGINS`, is refused with 403 (a request without `Origin` is not from a
  page's script or form on another site: browsers send it on every cross-origin POST).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import Scope

from ..errors import Failure, Kind
from .ticket import Ticket

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# Headers a proxy adds (RFC 7239's, and the de facto ones nginx, HAProxy and others send).
FORWARDED_HEADERS = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip"}
)
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def host_port(host: str) -> int | None:
    """The port of a `Host` header's value, or None when it names none (or not a number)."""
    host = host.strip()
    tail = host.rpartition("]")[2] if host.startswith("[") else host
    if tail.count(":") != 1:
        return None
    port = tail.partition(":")[2]
    return int(port) if port.isdigit() and len(port) <= 5 else -1


def host_name(host: str) -> str:
    """The name of a `Host` header's value, without its port (`[::1]:8000` → `::1`)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


class LocalGuard:
    """The admission gate of `STREAMCHAT_AUTH=off`: allowed hosts, same-origin writes."""

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        cors_origins: Iterable[str],
        *,
        refuse_proxied: bool = False,
    ) -> None:
        self._hosts = {host_name(h) for h in allowed_hosts}
        self._origins = {o.rstrip("/").lower() for o in cors_origins}
        self._refuse_proxied = refuse_proxied

    async def admit(self, ticket: Ticket, scope: Scope) -> None:
        """Refuse a request for another host, or a cross-origin write."""
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self._hosts and host_name(host) not in self._hosts:
            raise Failure(Kind.FORBIDDEN, "host_not_allowed")
        origin = headers.get("origin")
        if ticket.method in _UNSAFE and origin is not None and not self._same(origin, host):
            raise Failure(Kind.FORBIDDEN, "origin_not_allowed")
        if self._refuse_proxied and ticket.api is not None and self._proxied(scope, host):
            raise Failure(Kind.FORBIDDEN, "auth_off_behind_proxy")

    def _proxied(self, scope: Scope, host: str) -> bool:
        """Whether the request came through a proxy: forwarded headers, a Host that is not
        a loopback name (this server listens on loopback only), or one naming another port
        than ours (a browser or curl that reaches us directly names ours)."""
        if any(name in FORWARDED_HEADERS for name, _ in scope["headers"]):
            return True
        if host_name(host) not in LOOPBACK_HOSTS:
            return True
        port = host_port(host)
        # The port the connection really reached (the socket's, whatever the settings say).
        server = scope.get("server")
        ours = server[1] if server and len(server) > 1 else None
        return port is not None and ours is not None and port != ours

    def _same(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self._origins:
            return True
        return origin != "null" and urlsplit(origin).netloc == host.strip().lower()
