"""The bound on streams generating at once (STREAMCHAT_MAX_STREAMS).

Beyond it a new chat is refused before anything is opened upstream: 503, envelope code 63,
and `Retry-After`, so a load balancer or a client backs off instead of piling on.
"""

from __future__ import annotations

from ..errors import Failure, Kind

# Streams last seconds to minutes: asking for a retry sooner would mostly meet a full server.
RETRY_AFTER_SECONDS = 5


class StreamSlots:
    """Counts the streams this process is generating; refuses one beyond `limit` (0: none)."""

    __slots__ = ("limit", "taken")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0

    def take(self) -> None:
        """Take a slot for a new stream, or raise `Kind.BUSY` when all are taken."""
        if self.limit and self.taken >= self.limit:
            raise Failure(Kind.BUSY, "server_busy", retry_after=RETRY_AFTER_SECONDS)
        self.taken += 1

    def give_back(self, *_: object) -> None:
        """Free a slot: the stream ended, or never started (usable as a done callback)."""
        self.taken -= 1
