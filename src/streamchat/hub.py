"""The stream hub: each stream's events, kept for replay, and the followers that wait on them.

A stream is written by exactly one generation task and read by any number of followers
(the response that started it, resumed responses). Indices are positions: the first event
appended is index 0, and there are no gaps. Finished streams stay replayable for a bounded
time and within a bounded memory budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class StreamNotFound(Exception):
    """No such stream: never created, or expired."""


@dataclass(slots=True)
class Batch:
    """Events ready for one write: `payloads[i]` has index `first_index + i`."""

    first_index: int
    payloads: list[bytes]
    ended: bool


class Subscription(Protocol):
    """A follower's cursor into one stream."""

    async def next(self, idle_seconds: float) -> Batch | None:
        """The events after the cursor, waiting up to `idle_seconds`; None if none came."""
        ...

    async def close(self) -> None:
        """Stop following; the last follower leaving makes the stream idle."""
        ...


class StreamHub(Protocol):
    """Where generations write events and responses follow them."""

    async def create(self, stream_id: str, on_idle: Callable[[], None]) -> None:
        """Create an empty stream. `on_idle` runs when its last follower leaves early."""
        ...

    async def append(self, stream_id: str, payload: bytes, *, last: bool = False) -> None:
        """Append the next event; `last` ends the stream."""
        ...

    async def subscribe(self, stream_id: str, after: int) -> Subscription:
        """Follow events with index > `after`. Raises `StreamNotFound`."""
        ...

    async def followers(self, stream_id: str) -> int:
        """How many followers the stream has now (0 for unknown streams)."""
        ...

    async def start(self) -> None:
        """Begin background upkeep."""
        ...

    async def close(self) -> None:
        """Stop background upkeep."""
        ...


@dataclass(slots=True, eq=False)
class _Stream:
    on_idle: Callable[[], None]
    events: list[bytes] = field(default_factory=list)
    size: int = 0
    done: bool = False
    followers: int = 0
    changed: asyncio.Event | None = None

    def notify(self) -> None:
        # The event is created lazily by a waiting follower and replaced after each wake-up,
        # so an append with nobody waiting costs nothing.
        if self.changed is not None:
            self.changed.set()
            self.changed = None


class _MemorySubscription:
    __slots__ = ("_closed", "_position", "_stream")

    def __init__(self, stream: _Stream, after: int) -> None:
        self._stream = stream
        self._position = max(after + 1, 0)
        self._closed = False
        stream.followers += 1

    async def next(self, idle_seconds: float) -> Batch | None:
        stream = self._stream
        if self._position >= len(stream.events) and not stream.done:
            if stream.changed is None:
                stream.changed = asyncio.Event()
            changed = stream.changed
            try:
                async with asyncio.timeout(idle_seconds):
                    await changed.wait()
            except TimeoutError:
                return None
        first = self._position
        payloads = stream.events[first:]
        self._position = first + len(payloads)
        return Batch(first, payloads, stream.done and self._position >= len(stream.events))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        stream = self._stream
        stream.followers -= 1
        if stream.followers == 0 and not stream.done:
            stream.on_idle()


class MemoryHub:
    """The in-process hub, for a single node."""

    def __init__(self, *, ttl_seconds: float, retain_bytes: int) -> None:
        self._ttl = ttl_seconds
        self._retain_bytes = retain_bytes
        self._streams: dict[str, _Stream] = {}
        # Finished streams, oldest first, with their expiry time.
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._finished_bytes = 0
        self._sweeper: asyncio.Task[None] | None = None

    async def create(self, stream_id: str, on_idle: Callable[[], None]) -> None:
        self._streams[stream_id] = _Stream(on_idle)

    async def append(self, stream_id: str, payload: bytes, *, last: bool = False) -> None:
        stream = self._streams[stream_id]
        stream.events.append(payload)
        stream.size += len(payload)
        if last:
            stream.done = True
            self._retire(stream_id, stream)
        stream.notify()

    async def subscribe(self, stream_id: str, after: int) -> Subscription:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        return _MemorySubscription(stream, after)

    async def followers(self, stream_id: str) -> int:
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.followers

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="hub-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _retire(self, stream_id: str, stream: _Stream) -> None:
        self._finished[stream_id] = time.monotonic() + self._ttl
        self._finished_bytes += stream.size
        while self._finished_bytes > self._retain_bytes and self._finished:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        stream_id, _ = self._finished.popitem(last=False)
        stream = self._streams.pop(stream_id)
        self._finished_bytes -= stream.size

    def sweep(self) -> None:
        """Forget finished streams whose time to live has passed."""
        now = time.monotonic()
        while self._finished and next(iter(self._finished.values())) <= now:
            self._drop_oldest()

    async def _sweep_forever(self) -> None:
        interval = min(max(self._ttl / 10, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            self.sweep()
