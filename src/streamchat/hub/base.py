"""The stream hub: each stream's events, kept for replay, and the followers that wait on them.

A stream is written by exactly one generation task and read by any number of followers
(the response that started it, resumed responses), on any node when the hub is shared.
Indices are positions: the first event appended is index 0, and there are no gaps. Finished
streams stay replayable for a bounded time and within a bounded memory budget.

This module holds the contract (`StreamHub`, `Subscription`) and the hub's errors;
`local.py` is one stream's events in this process (both hubs keep them), `memory.py` the
in-process `MemoryHub`, and `redis.py` the same contract on Redis for several nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..errors import Failure, Kind


class StreamNotFound(Failure):
    """No such stream: never created, or expired."""

    kind = Kind.NOT_FOUND
    key = "stream_not_found"

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id=stream_id)


class HubUnavailable(Failure):
    """The shared hub (Redis) stayed out of reach for longer than allowed."""

    kind = Kind.STREAM_UNAVAILABLE
    key = "stream_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail)


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the hub calls back on the node that writes a stream.

    On a shared hub these are called on the writing node even when the cause is on another
    one: a follower leaving there, a cancel request there.
    """

    on_idle: Callable[[], None] = _nothing
    """The last follower left before the end (anywhere: check `followers()` before acting)."""
    on_cancel: Callable[[], None] = _nothing
    """Someone asked to stop the generation."""
    on_lost: Callable[[], None] = _nothing
    """The hub could not share the stream for too long: end it with an error."""


@dataclass(slots=True)
class Batch:
    """Events ready for one write: `payloads[i]` has index `first_index + i`."""

    first_index: int
    payloads: list[bytes]
    ended: bool


class Subscription(Protocol):
    """A follower's cursor into one stream."""

    async def next(self, idle_seconds: float) -> Batch | None:
        """The events after the cursor, waiting up to `idle_seconds`; None if none came.

        Raises `HubUnavailable` when the stream can no longer be followed from here.
        """
        ...

    async def close(self) -> None:
        """Stop following; the last follower leaving makes the stream idle."""
        ...


class StreamHub(Protocol):
    """Where generations write events and responses follow them."""

    async def create(self, stream_id: str, hooks: Hooks, uid: int | None = None) -> None:
        """Create an empty stream written from this node, owned by `uid` (None: nobody in
        particular). Raises `HubUnavailable`."""
        ...

    async def owner(self, stream_id: str) -> int | None:
        """The uid that owns the stream. Raises `StreamNotFound`, `HubUnavailable`."""
        ...

    def append(self, stream_id: str, payload: bytes, *, last: bool = False) -> None:
        """Append the next event; `last` ends the stream. Never waits (for a shared store
        neither): once per token, so a plain call, not a coroutine."""
        ...

    def extend(self, stream_id: str, payloads: list[bytes]) -> None:
        """Append several events at once (none of them the last): what one read from the
        provider made, with one wake-up of the followers instead of one per event."""
        ...

    async def subscribe(self, stream_id: str, after: int) -> Subscription:
        """Follow events with index > `after`. Raises `StreamNotFound`, `HubUnavailable`."""
        ...

    async def followers(self, stream_id: str) -> int:
        """How many followers the stream has now, on every node (0 for unknown streams).

        Raises `HubUnavailable` when they cannot all be counted.
        """
        ...

    async def request_cancel(self, stream_id: str) -> bool:
        """Have the writing node's `on_cancel` called; False if the stream has ended.

        Raises `StreamNotFound`, `HubUnavailable`.
        """
        ...

    async def start(self) -> None:
        """Begin background upkeep."""
        ...

    def stopped(self) -> list[str]:
        """The names of background tasks that should be running and are not (for /readyz)."""

    async def ping(self) -> bool:
        """Whether the hub's backing store answers (Redis), for /readyz."""
        ...

    async def close(self) -> None:
        """Stop background upkeep."""
        ...
