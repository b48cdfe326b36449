"""One stream's events in this process, and where its followers here wait for news."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .base import Batch, Hooks

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
    uid: int | None = None  # the owner
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

    def extend(self, payloads: list[bytes]) -> None:
        """Append several events (none of them the last) and wake the followers once."""
        if len(payloads) == 1:  # a token a read, a model's own pace: as cheap as `add`
            self.events.append(payloads[0])
            self.size += len(payloads[0])
        else:
            self.events += payloads
            self.size += sum(map(len, payloads))
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
        """The events after the cursor, waiting up to `idle_seconds`; None if none came.

        At or past the end of a finished stream (a resume after its last event): that last
        event again, so that the response ends as the stream did, at once.
        """
        stream = self._stream
        if self._position >= len(stream.events):
            if stream.done and stream.events:
                return Batch(len(stream.events) - 1, stream.events[-1:], True)
            if not stream.done and not await stream.changes.wait(idle_seconds):
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
