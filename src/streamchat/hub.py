"""The stream hub: each stream's events, kept for replay, and the followers that wait on them.

A stream is written by exactly one generation task and read by any number of followers
(the response that started it, resumed responses), on any node when the hub is shared.
Indices are positions: the first event appended is index 0, and there are no gaps. Finished
streams stay replayable for a bounded time and within a bounded memory budget.

This module holds the contract (`StreamHub`, `Subscription`) and the in-process
`MemoryHub`; `hub_redis.py` implements the same contract on Redis for several nodes.
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


class HubUnavailable(Exception):
    """The shared hub (Redis) stayed out of reach for longer than allowed."""


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

    async def create(self, stream_id: str, hooks: Hooks) -> None:
        """Create an empty stream written from this node. Raises `HubUnavailable`."""
        ...

    def append(self, stream_id: str, payload: bytes, *, last: bool = False) -> None:
        """Append the next event; `last` ends the stream. Never waits (for a shared store
        neither): once per token, so a plain call, not a coroutine."""
        ...

    async def subscribe(self, stream_id: str, after: int) -> Subscription:
        """Follow events with index > `after`. Raises `StreamNotFound`, `HubUnavailable`."""
        ...

    async def followers(self, stream_id: str) -> int:
        """How many followers the stream has now, on every node (0 for unknown streams)."""
        ...

    async def request_cancel(self, stream_id: str) -> bool:
        """Have the writing node's `on_cancel` called; False if the stream has ended.

        Raises `StreamNotFound`, `HubUnavailable`.
        """
        ...

    async def start(self) -> None:
        """Begin background upkeep."""
        ...

    async def close(self) -> None:
        """Stop background upkeep."""
        ...


# A timer may run a little before its time (the loop's clock resolution); that is on time.
_EARLY = 0.001


class Changes:
    """Where a stream's followers wait for news, and what wakes them all.

    Waits are on the hot path (a follower waits once per event at low rates), so a wait is
    one future and no timer: `asyncio.timeout` per wait cost a timer handle, a `Timeout`
    and, with an `Event`, a second future each time, a sixth of the server's time at a
    thousand streams. Instead one timer per stream watches the silence: it is armed when
    waiting begins and, when it fires, re-armed for the current deadline if news came
    meanwhile. A stream that keeps talking costs one timer callback per `seconds`.
    """

    __slots__ = ("_due", "_timer", "_waiters")

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[bool]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # when the waiters give up, if no news comes first

    def notify(self) -> None:
        """Wake every waiting follower."""
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(True)

    async def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for the next `notify`; False if none came.

        Followers that wait together give up together, `seconds` after the first began.
        """
        loop = asyncio.get_running_loop()
        if not self._waiters:
            self._due = loop.time() + seconds
            if self._timer is None:
                self._timer = loop.call_at(self._due, self._expire)
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        return await waiter

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._waiters:
            self._timer = None
        elif loop.time() + _EARLY < self._due:
            self._timer = loop.call_at(self._due, self._expire)
        else:
            self._timer = None
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(False)


@dataclass(slots=True, eq=False)
class LocalStream:
    """One stream's events in this process, and the followers here waiting on them."""

    hooks: Hooks
    events: list[bytes] = field(default_factory=list)
    size: int = 0
    done: bool = False
    followers: int = 0
    changes: Changes = field(default_factory=Changes)

    def add(self, payload: bytes, last: bool) -> None:
        """Append one event and wake the followers."""
        self.events.append(payload)
        self.size += len(payload)
        if last:
            self.done = True
        self.changes.notify()


class LocalSubscription:
    """A follower of a `LocalStream`: every event ready at a wake-up comes as one batch."""

    __slots__ = ("_closed", "_position", "_stream")

    def __init__(self, stream: LocalStream, after: int) -> None:
        self._stream = stream
        self._position = max(after + 1, 0)
        self._closed = False
        stream.followers += 1

    async def next(self, idle_seconds: float) -> Batch | None:
        """The events after the cursor, waiting up to `idle_seconds`; None if none came."""
        stream = self._stream
        if (
            self._position >= len(stream.events)
            and not stream.done
            and not await stream.changes.wait(idle_seconds)
        ):
            return None
        first = self._position
        payloads = stream.events[first:]
        self._position = first + len(payloads)
        return Batch(first, payloads, stream.done and self._position >= len(stream.events))

    async def close(self) -> None:
        """Stop following; the last follower leaving an unfinished stream makes it idle."""
        if self._closed:
            return
        self._closed = True
        stream = self._stream
        stream.followers -= 1
        if stream.followers == 0 and not stream.done:
            stream.hooks.on_idle()


class MemoryHub:
    """The in-process hub, for a single node."""

    def __init__(self, *, ttl_seconds: float, retain_bytes: int) -> None:
        self._ttl = ttl_seconds
        self._retain_bytes = retain_bytes
        self._streams: dict[str, LocalStream] = {}
        # Finished streams, oldest first, with their expiry time.
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._finished_bytes = 0
        self._sweeper: asyncio.Task[None] | None = None

    async def create(self, stream_id: str, hooks: Hooks) -> None:
        """Create an empty stream."""
        self._streams[stream_id] = LocalStream(hooks)

    def append(self, stream_id: str, payload: bytes, *, last: bool = False) -> None:
        """Append the next event; `last` ends the stream."""
        stream = self._streams[stream_id]
        stream.add(payload, last)
        if last:
            self._retire(stream_id, stream)

    async def subscribe(self, stream_id: str, after: int) -> Subscription:
        """Follow events with index > `after`. Raises `StreamNotFound`."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        return LocalSubscription(stream, after)

    async def followers(self, stream_id: str) -> int:
        """How many followers the stream has now (0 for unknown streams)."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.followers

    async def request_cancel(self, stream_id: str) -> bool:
        """Call the stream's `on_cancel`; False if it has ended. Raises `StreamNotFound`."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        if stream.done:
            return False
        stream.hooks.on_cancel()
        return True

    async def start(self) -> None:
        """Begin sweeping expired streams."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="hub-sweeper")

    async def close(self) -> None:
        """Stop sweeping."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _retire(self, stream_id: str, stream: LocalStream) -> None:
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
