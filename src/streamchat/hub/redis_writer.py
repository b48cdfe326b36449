"""The writing side of the Redis hub: this node's streams, copied to Redis behind the generation.

A generation never waits for Redis. `append` adds the event to the stream's copy in this
process (which the followers on this node read directly) and marks the stream dirty; one
task per node sends every dirty stream's new events in one command (the `FLUSH` script: per
stream one `XADD` per event, one `PUBLISH` of the batch) and one round trip. What arrives
while a round is in flight goes out in the next one, so the number of round trips follows
Redis's latency, not the token rate, and the client-side cost per token stays small: in
redis-py, commands, not bytes, are what costs.

Creating a stream joins the next round too, and waits for it: once `create` returns, every
node knows the stream. Explicit entry ids make a round that is sent again after a connection
failure harmless. A stream whose events key vanished (a Redis restarted without persistence)
is written again from its local copy. A stream that cannot be written for longer than the
outage budget is reported lost to its generation (which then ends it with an error event);
its copy keeps being retried until its time to live has passed. A stream another node ended
because it took this one for dead (`reaped`, redis_nodes.py) is refused by Redis from then
on, so that no event follows its error event there; it too is reported lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

from .base import Batch, Hooks, HubUnavailable
from .local import LocalStream
from .redis_wire import (
    FLUSH,
    REDIS_ERRORS,
    WRITE_ERRORS,
    Keys,
    backoff,
    encode_batch,
    followers,
)

log = logging.getLogger(__name__)

ROUND_STREAMS = 256  # streams per FLUSH command: keeps each script short for Redis


def _loop_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class Owned:
    """A stream written by this node, and how much of it Redis has."""

    stream_id: str
    local: LocalStream
    written: int = 0
    created: asyncio.Future[None] = field(default_factory=_loop_future)
    failing_since: float | None = None
    lost: bool = False
    ended_at: float | None = None
    cancelled: bool = False
    reaped: bool = False  # ended in Redis by another node: nothing more goes there

    def cancel(self) -> None:
        """Pass a cancel request on to the generation, once however many ways it arrives."""
        if not self.cancelled and not self.local.done:
            self.cancelled = True
            self.local.hooks.on_cancel()


@dataclass(slots=True)
class _Part:
    owned: Owned
    start: int
    end: int


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
        self._flush_script = client.register_script(FLUSH)
        self.owned: dict[str, Owned] = {}
        self._dirty: dict[str, Owned] = {}
        self._wake = asyncio.Event()
        self._flushing = False
        self._round_done = asyncio.Event()

    async def create(self, stream_id: str, hooks: Hooks, uid: int | None) -> LocalStream:
        """Register a new stream here and, in the next round, in Redis; wait for that round."""
        owned = Owned(stream_id, LocalStream(hooks, uid))
        self.owned[stream_id] = owned
        self._mark(owned)
        try:
            async with asyncio.timeout(self._outage):
                await owned.created
        except BaseException as exc:
            self._forget(owned)
            if isinstance(exc, TimeoutError):
                raise HubUnavailable(f"redis out of reach for {self._outage:g}s") from None
            raise
        return owned.local

    def append(self, stream_id: str, payload: bytes, last: bool) -> None:
        """Add an event to the local copy and schedule it for Redis."""
        owned = self.owned[stream_id]
        owned.local.add(payload, last)
        if last:
            owned.ended_at = time.monotonic()
            if owned.reaped:
                self._forget(owned)
        self._mark(owned)

    def extend(self, stream_id: str, payloads: list[bytes]) -> None:
        """Add several events (none of them the last) and schedule them for Redis."""
        owned = self.owned[stream_id]
        owned.local.extend(payloads)
        self._mark(owned)

    def pending(self) -> int:
        """How many streams have events Redis does not have yet."""
        return len(self._dirty) + self._flushing

    async def run(self) -> None:
        """Send dirty streams to Redis, one round at a time, forever."""
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
        """Extend live streams' time to live, rewrite vanished ones, and act on what their
        meta says in case its message was missed: a cancel, or no follower left anywhere."""
        streams = [o for o in self.owned.values() if o.created.done() and not o.reaped]
        if not streams:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for owned in streams:
                pipe.pexpire(self._keys.events(owned.stream_id), self._ttl_ms)
                pipe.pexpire(self._keys.meta(owned.stream_id), self._ttl_ms)
                pipe.hgetall(self._keys.meta(owned.stream_id))
            results = await pipe.execute()
        for i, owned in enumerate(streams):
            events_kept, meta_kept, meta = results[3 * i : 3 * i + 3]
            if not meta_kept or (owned.written and not events_kept):
                log.warning("stream %s vanished from redis: writing it again", owned.stream_id)
                owned.written = 0
                self._mark(owned)
                continue
            if meta.get(b"cancel"):
                owned.cancel()
            if not owned.local.done and owned.local.followers == 0 and not followers(meta):
                owned.local.hooks.on_idle()

    async def refresh_forever(self) -> None:
        """`refresh` a few times per time to live."""
        interval = min(max(self._ttl / 3, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except REDIS_ERRORS as exc:
                log.warning("could not refresh streams in redis: %s", exc)
            except Exception:  # one bad reply must not stop refreshing every other stream
                log.exception("refreshing streams in redis failed")

    async def drain(self, seconds: float) -> None:
        """Wait (up to `seconds`) until Redis has every event written so far."""
        try:
            async with asyncio.timeout(seconds):
                while self.pending():
                    await self._round_done.wait()
        except TimeoutError:
            log.warning("%d streams not fully written to redis at shutdown", self.pending())

    def _mark(self, owned: Owned) -> None:
        if owned.stream_id in self.owned and not owned.reaped:
            self._dirty[owned.stream_id] = owned
            self._wake.set()

    def _forget(self, owned: Owned) -> None:
        if self.owned.get(owned.stream_id) is owned:
            del self.owned[owned.stream_id]
        self._dirty.pop(owned.stream_id, None)

    async def _flush(self, batch: list[Owned]) -> bool:
        ok = True
        for i in range(0, len(batch), ROUND_STREAMS):
            parts = [_Part(o, o.written, len(o.local.events)) for o in batch[i : i + ROUND_STREAMS]]
            ok &= await self._send(parts)
        return ok

    async def _send(self, parts: list[_Part]) -> bool:
        """One FLUSH command for `parts`; whether Redis took every one."""
        try:
            keys, args = self._command(parts)
            results = await self._flush_script(keys=keys, args=args)
        except WRITE_ERRORS as exc:
            log.warning("redis refused or missed a round of %d streams: %s", len(parts), exc)
            self._failed([part.owned for part in parts])
            return False
        except Exception as exc:
            # Not Redis's answer: something one stream carries that the client could not
            # send. Send each stream alone so that only that one fails; this task goes on.
            if len(parts) > 1:
                sent = [await self._send([part]) for part in parts]
                return all(sent)
            log.error("stream %s: not written to redis: %r", parts[0].owned.stream_id, exc)
            self._failed([parts[0].owned])
            return False
        ok = True
        for part, result in zip(parts, results, strict=True):
            ok &= self._settle(part, result)
        return ok

    def _command(self, parts: list[_Part]) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        args: list[Any] = [self._node_id, self._ttl_ms, self._max_events]
        for part in parts:
            stream_id, local = part.owned.stream_id, part.owned.local
            payloads = local.events[part.start : part.end]
            ends = local.done and part.end == len(local.events) and part.end > part.start
            flags = int(ends) | (2 if part.start == 0 else 0)
            live = encode_batch(Batch(part.start, payloads, ends)) if payloads else b""
            keys += (self._keys.events(stream_id), self._keys.meta(stream_id))
            uid = "" if local.uid is None else str(local.uid)
            args += (self._keys.live(stream_id), part.start, len(payloads), flags, live, uid)
            args += payloads
        return keys, args

    def _settle(self, part: _Part, result: Any) -> bool:
        owned = part.owned
        if owned.written != part.start:
            return True  # found vanished meanwhile: a rewrite from 0 is already scheduled
        if result == 2:
            self._reaped(owned)
            return True
        if result == 0:
            log.warning("stream %s vanished from redis: writing it again", owned.stream_id)
            owned.written = 0
            self._mark(owned)
            return True
        if result != 1:
            log.error("redis refused a write of stream %s: %s", owned.stream_id, result)
            self._failed([owned])
            return False
        owned.written = part.end
        owned.failing_since = None
        if not owned.created.done():
            owned.created.set_result(None)
        if owned.local.done and owned.written == len(owned.local.events):
            # Redis has it all: followers here keep their reference, new ones read Redis.
            self._forget(owned)
        return True

    def _reaped(self, owned: Owned) -> None:
        """Another node ended the stream in Redis (it took this node for dead): stop it here."""
        if owned.reaped:
            return
        owned.reaped = True
        self._dirty.pop(owned.stream_id, None)
        log.error("stream %s: ended by another node that took this one for dead", owned.stream_id)
        if owned.local.done:
            self._forget(owned)
        else:
            owned.lost = True
            owned.local.hooks.on_lost()

    def _failed(self, batch: list[Owned]) -> None:
        now = time.monotonic()
        for owned in batch:
            self._mark(owned)
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
                self._forget(owned)
