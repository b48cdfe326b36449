"""The reading side of the Redis hub: streams written on another node, followed on this one.

Each such stream has one `Mirror` per node, shared by the followers here: it is filled from
the live batches the writer publishes (no Redis command per token on this side) and, to
catch up or to close a gap left by a lost message, from `XRANGE`. Indices make both paths
idempotent: whatever is already known is skipped, and a batch that does not join what is
known triggers a read instead of being applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import redis.asyncio as redis
from redis.commands.core import AsyncScript

from .base import Batch, HubUnavailable, StreamNotFound
from .local import Changes
from .redis_wire import (
    DATA_FIELD,
    END_FIELD,
    REDIS_ERRORS,
    Keys,
    decode_batch,
    entry_id,
    entry_index,
)

log = logging.getLogger(__name__)

PAGE = 512  # entries per XRANGE


class Mirror:
    """This node's copy of a stream written elsewhere, from index `base` on."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        stream_id: str,
        *,
        base: int,
        register: AsyncScript,
        follower_field: str,
        outage_seconds: float,
    ) -> None:
        self.stream_id = stream_id
        self.base = base
        self.events: list[bytes] = []
        self.done = False
        self.final: Batch | None = None  # the stream's last event, once it has ended
        self.lost: str | None = None
        self.followers = 0
        self.registered = True
        self._client = client
        self._events_key = keys.events(stream_id)
        self._meta_key = keys.meta(stream_id)
        self._register = register
        self._follower_field = follower_field
        self._outage = outage_seconds
        self._changes = Changes()
        self._lock = asyncio.Lock()
        self._filler: asyncio.Task[None] | None = None
        self._again = False
        self._missing_since: float | None = None

    @property
    def end(self) -> int:
        """The index after the last event known here."""
        return self.base + len(self.events)

    async def changed(self, seconds: float) -> bool:
        """Wait up to `seconds` for news (events, end, loss); False if none came."""
        return await self._changes.wait(seconds)

    def on_live(self, message: bytes) -> None:
        """A batch from the live channel: apply it if it joins, else read Redis."""
        try:
            batch = decode_batch(message)
        except ValueError:
            log.error("stream %s: malformed live message", self.stream_id)
            self.request_fill()
            return
        if not self._extend(batch.first_index, batch.payloads, batch.ended) or not self.registered:
            self.request_fill()

    async def fill(self) -> None:
        """Read from Redis everything after what is known here (and register if needed)."""
        async with self._lock:
            while not self.done and self.lost is None:
                start = self.end
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.xrange(self._events_key, entry_id(start), "+", count=PAGE)
                    if self.registered:
                        pipe.exists(self._meta_key)
                    else:
                        args: list[str | int] = [self._follower_field, self.followers]
                        await self._register(keys=[self._meta_key], args=args, client=pipe)
                    entries, present = await pipe.execute()
                self._note_presence(bool(present))
                if not self._take(start, entries) or len(entries) < PAGE:
                    return

    async def find_end(self) -> None:
        """For a stream that has ended before `base` (a resume at or past its end): learn its
        last event, and that nothing follows."""
        async with self._lock:
            found = await self._client.xrevrange(self._events_key, "+", "-", count=1)
            entries = cast(list[tuple[bytes, dict[bytes, bytes]]], found)
            if entries and END_FIELD in entries[0][1] and not self.done:
                raw, fields = entries[0]
                self.final = Batch(entry_index(raw), [fields[DATA_FIELD]], True)
                self.done = True
                self._changes.notify()

    async def backfill(self, first: int) -> None:
        """Make events from `first` on known here. Raises `StreamNotFound` if trimmed."""
        async with self._lock:
            if first >= self.base:
                return
            found = await self._client.xrange(
                self._events_key, entry_id(first), entry_id(self.base - 1)
            )
            entries = cast(list[tuple[bytes, dict[bytes, bytes]]], found)
            # Compared one by one, never against a range built in memory: an earlier follower
            # may have set `base` far past the stream's end (a resume `after` of 10**9).
            if any(entry_index(raw) != first + i for i, (raw, _) in enumerate(entries)):
                raise StreamNotFound(self.stream_id)
            payloads = [fields[DATA_FIELD] for _, fields in entries]
            if len(payloads) == self.base - first:
                self.events[:0] = payloads
            elif not self.events:
                # `base` was past the end (nothing was ever known here): start over at `first`.
                self.events = payloads
            else:
                raise StreamNotFound(self.stream_id)  # a gap below what is known: trimmed
            self.base = first

    def request_fill(self) -> None:
        """`fill` in the background (once more if one is running)."""
        if self._filler is not None and not self._filler.done():
            self._again = True
            return
        self._filler = asyncio.create_task(self._fill_again(), name=f"fill-{self.stream_id}")

    def fail(self, reason: str) -> None:
        """The stream cannot be followed from here any more."""
        if self.lost is None and not self.done:
            log.warning("stream %s: cannot follow it any more: %s", self.stream_id, reason)
            self.lost = reason
            self._changes.notify()

    def close(self) -> None:
        """Stop background reads."""
        if self._filler is not None:
            self._filler.cancel()

    async def _fill_again(self) -> None:
        while True:
            self._again = False
            try:
                await self.fill()
            except REDIS_ERRORS as exc:
                # The listener reconnects and asks again; the outage budget bounds the wait.
                log.debug("stream %s: read failed: %s", self.stream_id, exc)
            if not self._again:
                return

    def _note_presence(self, present: bool) -> None:
        if present:
            self.registered = True
            self._missing_since = None
            return
        now = time.monotonic()
        if self._missing_since is None:
            self._missing_since = now
        elif now - self._missing_since > self._outage:
            self.fail("it vanished from redis")

    def _take(self, start: int, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> bool:
        payloads: list[bytes] = []
        ended = False
        for raw, fields in entries:
            if entry_index(raw) != start + len(payloads):
                self.fail("its older events were trimmed")
                return False
            payloads.append(fields[DATA_FIELD])
            ended = END_FIELD in fields
        if payloads:
            self._extend(start, payloads, ended)
        return True

    def _extend(self, first: int, payloads: list[bytes], ended: bool) -> bool:
        end = self.end
        if first > end:
            return False
        fresh = payloads[end - first :]
        self.events.extend(fresh)
        if ended:
            self.done = True
            if payloads:
                self.final = Batch(first + len(payloads) - 1, payloads[-1:], True)
        if fresh or ended:
            self._changes.notify()
        return True


class RemoteSubscription:
    """A follower on this node of a stream written on another one."""

    __slots__ = ("_closed", "_mirror", "_position", "_release")

    def __init__(
        self, mirror: Mirror, after: int, release: Callable[[Mirror], Awaitable[None]]
    ) -> None:
        self._mirror = mirror
        self._position = max(after + 1, 0)
        self._release = release
        self._closed = False

    async def next(self, idle_seconds: float) -> Batch | None:
        """The events after the cursor, waiting up to `idle_seconds`; None if none came.

        At or past the end of a finished stream: its last event again, and the end.
        """
        mirror = self._mirror
        if self._position >= mirror.end and mirror.final is not None:
            return mirror.final
        if self._position >= mirror.end and not mirror.done:
            if mirror.lost is None and not await mirror.changed(idle_seconds):
                # Silence: cheap insurance against a lost last message.
                mirror.request_fill()
                return None
            if self._position >= mirror.end and not mirror.done:
                if mirror.lost is not None:
                    raise HubUnavailable(f"stream {mirror.stream_id}: {mirror.lost}")
                return None
        first = self._position
        payloads = mirror.events[first - mirror.base :]
        self._position = first + len(payloads)
        return Batch(first, payloads, mirror.done and self._position >= mirror.end)

    async def close(self) -> None:
        """Stop following; tells the writing node if that was the last follower anywhere."""
        if not self._closed:
            self._closed = True
            await self._release(self._mirror)
