"""Bounds on connections before a request reaches the app (issue 23): how long a request
head may take, how long a request body may stop arriving, and how many connections one
client address may hold open.

Without them, 200 sockets that sent nothing, or one header line every 10 s, stayed open for
ever: uvicorn times out an idle keep-alive connection only after a response, never a
connection's first request head, and nothing bounds the connections of one address, so a
lower file limit let them starve `/healthz`. The protocol (headlimit.py) asks this object.

uvicorn hands a worker process its `Config` and nothing else, so these travel on a `Config`
of our own (`ServeConfig`), pickled with it into each worker.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

import uvicorn

log = logging.getLogger("streamchat.access")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class ConnectionBounds:
    """The head timeout and the per-address cap of one server process, with its counts."""

    head_timeout: float = 10.0
    per_address: int = 256  # 0: no cap
    body_timeout: float = 30.0  # the longest silence while a request body is arriving
    trusted: tuple[Network, ...] = ()
    trust_all: bool = False
    _open: dict[str, int] = field(default_factory=dict)
    # Addresses refused since they were last under their share: logged once, not per
    # connection (a flood of connections must not become a flood of log lines).
    _refused: set[str] = field(default_factory=set)

    @classmethod
    def build(
        cls, head_timeout: float, body_timeout: float, per_address: int, trusted: list[str]
    ) -> ConnectionBounds:
        """Bounds for these settings; `trusted` lists addresses or networks (`*`: any)."""
        networks = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in trusted if entry != "*"
        )
        return cls(head_timeout, per_address, body_timeout, networks, "*" in trusted)

    def _exempt(self, address: str) -> bool:
        if self.trust_all:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # a Unix socket's peer has no address
            return True
        return any(ip in network for network in self.trusted)

    def opened(self, address: str | None) -> bool:
        """Count a new connection from `address`; False (not counted) if it is one too many."""
        if address is None or not self.per_address or self._exempt(address):
            return True
        count = self._open.get(address, 0)
        if count >= self.per_address:
            if address not in self._refused:
                self._refused.add(address)
                log.warning("%s: connections refused, %d already open from it", address, count)
            return False
        self._open[address] = count + 1
        return True

    def closed(self, address: str | None) -> None:
        """A connection `opened` counted has closed."""
        if address is None:
            return
        count = self._open.get(address)
        if count is None:
            return
        if count <= 1:
            del self._open[address]
        else:
            self._open[address] = count - 1
        self._refused.discard(address)


class ServeConfig(uvicorn.Config):
    """uvicorn's `Config`, carrying the connection bounds to every worker."""

    def __init__(self, *args: Any, bounds: ConnectionBounds | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bounds = bounds or ConnectionBounds()
