"""The writing side of the Redis hub: this node's streams, copied to Redis behind the generation.

A generation never waits for Redis. `append` adds the event to the stream's copy in this
process (which the followers on this node read directly) and marks the stream dirty; one
task per node copies every dirty stream's new events in one pipelined round trip. Tokens
that arrive while a round trip is in flight go out together in the next one, so the number
of round trips adapts to Redis's latency, not to the token rate.

Per round and stream: one `XADD` per new event and one `PUBLISH` of the whole batch to the
stream's live channel (plus `HSET` + `PEXPIRE` ×2 on its first and last round). Explicit
entry ids make a round that is sent again after a connection failure harmless. A stream whose
events key vanished (a Redis restarted without persistence) is written again from its local
copy. A stream that cannot be written for longer than the outage budget is reported lost to
its generation (which then ends it with an error event); its copy keeps being retried until
its time to live has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis import exceptions as redis_errors

from .hub import Batch, Hooks, LocalStream
from .redis_wire import (
    DATA_FIELD,
    END_FIELD,
    REDIS_ERRORS,
    Keys,
    backoff,
    encode_batch,
    entry_id,
    retrying,
)

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Owned:
    """A stream written by this node, and how much of it Redis has."""

    stream_id: str
    local: LocalStream
    written: int = 0
    failing_since: float | None = None
    lost: bool = False
    ended_at: float | None = None


@dataclass(slots=True)
class _Round:
    owned: Owned
    start: int
    end: int
    ending: bool
    commands: int
    first_xadd: int


class Replicator:
    """Copies this node's streams to Redis, in order, without gaps, behind their generations."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        node_id: str,
        *,
        ttl_seconds: float,
        outage_seconds: float,
        max_events: int,
    ) -> None:
        self._client = client
        self._keys = keys
        self._node_id = node_id
        self._ttl_ms = max(int(ttl_seconds * 1000), 1)
        self._ttl = ttl_seconds
        self._outage = outage_seconds
        self._max_events = max_events
        self.owned: dict[str, Owned] = {}
        self._dirty: dict[str, Owned] = {}
        self._wake = asyncio.Event()
        self._flushing = False
        self._round_done = asyncio.Event()

    async def create(self, stream_id: str, hooks: Hooks) -> LocalStream:
        """Register a new stream in Redis (so every node knows it) and here."""
        meta = self._keys.meta(stream_id)

        async def write() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(meta, "owner", self._node_id)
                pipe.pexpire(meta, self._ttl_ms)
                await pipe.execute()

        await retrying(write, budget=self._outage)
        local = LocalStream(hooks)
        self.owned[stream_id] = Owned(stream_id, local)
        return local

    def append(self, stream_id: str, payload: bytes, last: bool) -> None:
        """Add an event to the local copy and schedule it for Redis."""
        owned = self.owned[stream_id]
        owned.local.add(payload, last)
        if last:
            owned.ended_at = time.monotonic()
        self._mark(owned)

    def pending(self) -> int:
        """How many streams have events Redis does not have yet."""
        return len(self._dirty) + self._flushing

    async def run(self) -> None:
        """Copy dirty streams to Redis, one pipelined round trip at a time, forever."""
        attempt = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._dirty = list(self._dirty.values()), {}
            if not batch:
                continue
            self._flushing = True
            try:
                ok = await self._flush(batch)
            finally:
                self._flushing = False
                self._round_done.set()
                self._round_done = asyncio.Event()
            if ok:
                attempt = 0
                continue
            self._give_up_on_old(batch)
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def refresh(self) -> None:
        """Extend live streams' time to live; rewrite vanished ones; act on missed cancels."""
        streams = list(self.owned.values())
        if not streams:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for owned in streams:
                pipe.pexpire(self._keys.events(owned.stream_id), self._ttl_ms)
                pipe.pexpire(self._keys.meta(owned.stream_id), self._ttl_ms)
                pipe.hget(self._keys.meta(owned.stream_id), "cancel")
            results = await pipe.execute()
        for i, owned in enumerate(streams):
            events_kept, meta_kept, cancel = results[3 * i : 3 * i + 3]
            if owned.written and not (events_kept and meta_kept):
                log.warning("stream %s vanished from redis: writing it again", owned.stream_id)
                owned.written = 0
                self._mark(owned)
            if cancel and not owned.local.done:
                owned.local.hooks.on_cancel()

    async def refresh_forever(self) -> None:
        """`refresh` a few times per time to live."""
        interval = min(max(self._ttl / 3, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except REDIS_ERRORS as exc:
                log.warning("could not refresh streams in redis: %s", exc)

    def _mark(self, owned: Owned) -> None:
        self._dirty[owned.stream_id] = owned
        self._wake.set()

    async def _flush(self, batch: list[Owned]) -> bool:
        rounds: list[_Round] = []
        async with self._client.pipeline(transaction=False) as pipe:
            for owned in batch:
                planned = self._queue(pipe, owned)
                if planned is not None:
                    rounds.append(planned)
            if not rounds:
                return True
            try:
                results = await pipe.execute(raise_on_error=False)
            except REDIS_ERRORS as exc:
                log.warning("redis out of reach, %d streams waiting: %s", len(batch), exc)
                self._failed(batch)
                return False
        ok = True
        position = 0
        for planned in rounds:
            ok &= self._settle(planned, results[position : position + planned.commands])
            position += planned.commands
        return ok

    def _queue(self, pipe: Any, owned: Owned) -> _Round | None:
        stream_id, events = owned.stream_id, owned.local.events
        start, end = owned.written, len(events)
        if start >= end:
            return None
        ending = owned.local.done
        fresh = start == 0
        key, meta = self._keys.events(stream_id), self._keys.meta(stream_id)
        commands = 0
        if fresh:
            pipe.hset(meta, "owner", self._node_id)
            commands += 1
        first_xadd = commands
        for index in range(start, end):
            fields: dict[bytes, bytes] = {DATA_FIELD: events[index]}
            if ending and index == end - 1:
                fields[END_FIELD] = b"1"
            # NOMKSTREAM after the first round: a missing key means Redis lost it.
            pipe.xadd(
                key, fields, id=entry_id(index), maxlen=self._max_events, nomkstream=not fresh
            )
            commands += 1
        if ending:
            pipe.hset(meta, "ended", "1")
            commands += 1
        if fresh or ending:
            pipe.pexpire(key, self._ttl_ms)
            pipe.pexpire(meta, self._ttl_ms)
            commands += 2
        live = encode_batch(Batch(start, events[start:end], ending))
        pipe.publish(self._keys.live(stream_id), live)
        return _Round(owned, start, end, ending, commands + 1, first_xadd)

    def _settle(self, planned: _Round, results: list[Any]) -> bool:
        owned = planned.owned
        if owned.written != planned.start:
            return True  # found vanished meanwhile: a rewrite from 0 is already scheduled
        xadds = results[planned.first_xadd : planned.first_xadd + planned.end - planned.start]
        if planned.start > 0 and xadds[0] is None:
            log.warning("stream %s vanished from redis: writing it again", owned.stream_id)
            owned.written = 0
            self._mark(owned)
            return True
        errors = [r for r in results if isinstance(r, Exception) and not _already_written(r)]
        if errors:
            log.error("redis refused a write of stream %s: %s", owned.stream_id, errors[0])
            self._failed([owned])
            return False
        owned.written = planned.end
        owned.failing_since = None
        if owned.local.done and owned.written == len(owned.local.events):
            # Redis has it all: followers here keep their reference, new ones read Redis.
            self.owned.pop(owned.stream_id, None)
        return True

    def _failed(self, batch: list[Owned]) -> None:
        now = time.monotonic()
        self._wake.set()
        for owned in batch:
            self._dirty.setdefault(owned.stream_id, owned)
            if owned.failing_since is None:
                owned.failing_since = now
            elif now - owned.failing_since > self._outage and not owned.lost:
                owned.lost = True
                log.error(
                    "stream %s: redis out of reach for over %gs", owned.stream_id, self._outage
                )
                owned.local.hooks.on_lost()

    def _give_up_on_old(self, batch: list[Owned]) -> None:
        """Forget finished streams that could not be written within their time to live."""
        now = time.monotonic()
        for owned in batch:
            if owned.lost and owned.ended_at is not None and now - owned.ended_at > self._ttl:
                log.error("stream %s: giving up writing it to redis", owned.stream_id)
                self._dirty.pop(owned.stream_id, None)
                self.owned.pop(owned.stream_id, None)

    async def drain(self, seconds: float) -> None:
        """Wait (up to `seconds`) until Redis has every event written so far."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self.pending():
                    await self._round_done.wait()


def _already_written(error: Exception) -> bool:
    # A resent XADD whose first attempt did reach Redis: exactly what explicit ids are for.
    return isinstance(error, redis_errors.ResponseError) and "equal or smaller" in str(error)
