"""Several nodes: each one beats in Redis, and the others notice when one stops (kill -9).

Liveness is kept apart from everything else, as etcd's leases and Consul's sessions keep it:
`Heartbeat` sets `<prefix>alive:<node>` with a time-to-live of
STREAMCHAT_NODE_TIMEOUT_SECONDS, renewed four times per period, from a task and a Redis
connection of its own that do nothing else. A node is taken for dead only if it stopped
renewing: not because it follows many streams, nor because its other Redis commands queue
for the shared pool, nor because a database write is slow. (When the beat ran the stream
checks first, two round trips per followed stream, a node following 2,000 streams on a busy
loop missed its renewal and its live streams were ended by the others.)

`Watch`, another task, does the rest, a bounded amount per round: it publishes the set of
the streams this node writes (`<prefix>streams:<node>`) and its name in `<prefix>nodes`,
learns who writes each stream followed here from elsewhere (its mirrors), and looks for
writers whose alive key has expired. A stream whose writer is dead, and that has not ended,
is an orphan. One node ends it for every follower on every node (the `REAP` script, which
also refuses once the writer beats again or has written meanwhile): it writes the stream's
final event as the writer would have (the next entry, the `ended` flag, the live message),
marks it `reaped` so that Redis refuses any later write of the writer's (no event ever
follows the error event), and has the answer marked `interrupted` in the database. The event
and the database are the service's business, so the hub asks an `Orphans` handler for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol, cast

import redis.asyncio as redis

from .base import Batch
from .redis_wire import DATA_FIELD, END_FIELD, REAP, REDIS_ERRORS, Keys, encode_batch, entry_index

log = logging.getLogger(__name__)

_Entry = tuple[bytes, dict[bytes, bytes]]  # a Redis Stream entry: its id, its fields

# Work per round of the watch, so that a node following thousands of streams spreads it over
# several rounds (each a few round trips) instead of holding the loop and the pool at once.
OWNERS_PER_ROUND = 1024  # followed streams whose writer is looked up
REAPS_PER_ROUND = 128  # orphans ended
_BACKLOG_PAUSE = 0.01  # seconds between rounds while work is left

_ENDED, _ALIVE, _GREW = 0, 1, 2  # what ending an orphan found


class Orphans(Protocol):
    """What the service does with a stream whose writing node died."""

    def final_event(self, opening: bytes, index: int) -> bytes | None:
        """The event that ends the stream at `index`, from its first event (None: none)."""
        ...

    async def orphaned(self, opening: bytes) -> None:
        """The stream whose first event is `opening` has been ended: record it."""
        ...


class Heartbeat:
    """This node's beat, and nothing else: its alive key, renewed four times per timeout."""

    def __init__(self, client: redis.Redis, key: str, *, timeout_seconds: float) -> None:
        self._client = client  # its own connection: never waits behind other commands
        self._key = key
        self._timeout_ms = max(int(timeout_seconds * 1000), 1)

    async def beat(self) -> None:
        """Say this node is alive for one more timeout."""
        await self._client.set(self._key, b"1", px=self._timeout_ms)

    async def run(self) -> None:
        """Beat forever."""
        while True:
            try:
                await self.beat()
            except REDIS_ERRORS:
                pass  # out of reach: the listener reports it; beat again next quarter
            except Exception:  # a bug must not stop the beat, or every node takes us for dead
                log.exception("heartbeat failed")
            _raise_if_cancelled()
            await asyncio.sleep(self._timeout_ms / 4000)


class Watch:
    """This node's watch over the writers of the streams it follows, and over dead nodes."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        node_id: str,
        *,
        timeout_seconds: float,
        ttl_seconds: float,
    ) -> None:
        self._client = client
        self._keys = keys
        self._node_id = node_id
        self._period = max(timeout_seconds, 0.001) / 4
        self._ttl_ms = max(int(ttl_seconds * 1000), 1)
        self._reap = client.register_script(REAP)
        self._writers: dict[str, str] = {}  # followed stream -> its writer ("": nothing to do)
        self._orphans: dict[str, None] = {}  # streams to end, oldest first
        self._published: set[str] = set()
        self._rewrite = True  # the published set is to be written whole
        self.orphans: Orphans | None = None

    async def run(
        self, owned: Callable[[], Iterable[str]], followed: Callable[[], Iterable[str]]
    ) -> None:
        """Watch forever: `owned` names the streams written here, `followed` those followed
        here from elsewhere."""
        while True:
            more = False
            try:
                await self._publish(set(owned()))
                more = await self.round(list(followed()))
            except REDIS_ERRORS:
                pass  # out of reach: the listener reports it; look again next period
            except Exception:  # a bug must not stop the watch over every other node
                log.exception("node watch: round failed")
            _raise_if_cancelled()
            await asyncio.sleep(_BACKLOG_PAUSE if more else self._period)

    async def _publish(self, owned: set[str]) -> None:
        """Name this node in `nodes`, and the streams it writes, changes only."""
        key = self._keys.written_by(self._node_id)
        added, dropped = owned - self._published, self._published - owned
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(self._keys.nodes, self._node_id)
            if self._rewrite:
                pipe.delete(key)
                added, dropped = owned, set()
            if added:
                pipe.sadd(key, *added)
            if dropped:
                pipe.srem(key, *dropped)
            pipe.pexpire(key, self._ttl_ms)
            pipe.scard(key)
            results = await pipe.execute()
        self._published = owned
        # Redis lost it (restarted) or a write went astray: write it whole next time.
        self._rewrite = results[-1] != len(owned)

    async def round(self, followed: list[str]) -> bool:
        """Look once; whether work is left for the next round (it then comes at once)."""
        nodes, unknown = await self._learn_writers(followed)
        writers = {w for w in self._writers.values() if w} | nodes
        writers.discard(self._node_id)
        dead = await self._dead(sorted(writers))
        for node in dead & nodes:
            await self._take_streams_of(node)
        for stream_id, writer in self._writers.items():
            if writer in dead:
                self._orphans[stream_id] = None
        batch = list(self._orphans)[:REAPS_PER_ROUND]
        for stream_id in batch:
            del self._orphans[stream_id]
        await asyncio.gather(*(self._end(stream_id) for stream_id in batch))
        return bool(self._orphans) or unknown > OWNERS_PER_ROUND

    async def _learn_writers(self, followed: list[str]) -> tuple[set[str], int]:
        """The nodes of `nodes`; learns the writers of (some of) the newly followed streams.
        Returns the nodes and how many followed streams had no known writer."""
        following = set(followed)
        for stream_id in [s for s in self._writers if s not in following]:
            del self._writers[stream_id]
        unknown = [s for s in followed if s not in self._writers]
        lookup = unknown[:OWNERS_PER_ROUND]
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.smembers(self._keys.nodes)
            for stream_id in lookup:
                pipe.hget(self._keys.meta(stream_id), "owner")
            raw_nodes, *owners = await pipe.execute()
        for stream_id, owner in zip(lookup, owners, strict=True):
            self._writers[stream_id] = owner.decode() if owner else ""
        return {raw.decode() for raw in cast(set[bytes], raw_nodes)}, len(unknown)

    async def _dead(self, nodes: list[str]) -> set[str]:
        if not nodes:
            return set()
        async with self._client.pipeline(transaction=False) as pipe:
            for node in nodes:
                pipe.exists(self._keys.alive(node))
            alive = await pipe.execute()
        return {node for node, beating in zip(nodes, alive, strict=True) if not beating}

    async def _take_streams_of(self, node: str) -> None:
        """End the streams a dead node named in its last list, once: the node that takes
        `dead:<node>` does it."""
        taken = await self._client.set(
            self._keys.dead(node), self._node_id, nx=True, px=self._ttl_ms
        )
        if not taken:
            return
        key = self._keys.written_by(node)
        streams = cast(set[bytes], await self._client.smembers(key))
        log.warning("node %s stopped beating: ending its %d stream(s)", node, len(streams))
        self._orphans.update(dict.fromkeys(raw.decode() for raw in streams))
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.srem(self._keys.nodes, node)
            await pipe.execute()

    async def _end(self, stream_id: str) -> None:
        """End an orphan, unless it has ended, or its writer beats again."""
        try:
            for _ in range(3):  # it grew meanwhile: its node wrote, read it again
                outcome = await self._try_end(stream_id)
                if outcome != _GREW:
                    break
        except REDIS_ERRORS as exc:
            log.warning("stream %s: could not end it: %s", stream_id, exc)
            self._orphans[stream_id] = None  # next round
            return
        if outcome == _ENDED and stream_id in self._writers:
            self._writers[stream_id] = ""  # nothing left to watch

    async def _try_end(self, stream_id: str) -> int:
        """`_ENDED` (here, or before), `_ALIVE` (its writer beats again) or `_GREW`."""
        events, meta = self._keys.events(stream_id), self._keys.meta(stream_id)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hget(meta, "owner")
            pipe.xrange(events, "-", "+", count=1)
            pipe.xrevrange(events, "+", "-", count=1)
            owner, first, last = await pipe.execute()
        if owner is None or owner.decode() == self._node_id or not first or not last:
            return _ENDED  # expired, or not a stream of another node's
        top = cast(_Entry, last[0])
        if END_FIELD in top[1] or self.orphans is None:
            return _ENDED
        opening = cast(_Entry, first[0])[1][DATA_FIELD]
        index = entry_index(top[0]) + 1
        payload = self.orphans.final_event(opening, index) or b""
        live = encode_batch(Batch(index, [payload], True)) if payload else b""
        result = await self._reap(
            keys=[events, meta, self._keys.alive(owner.decode())],
            args=[self._node_id, index, payload, self._keys.live(stream_id), live, self._ttl_ms],
        )
        if result == 1:
            log.warning(
                "stream %s: its node %s stopped beating; ended it", stream_id, owner.decode()
            )
            await self.orphans.orphaned(opening)
        return {1: _ENDED, 0: _ENDED, 2: _ALIVE}.get(int(result), _GREW)


def _raise_if_cancelled() -> None:
    # redis-py may turn a cancellation in the middle of a command into a connection error,
    # which the loops above swallow: the task would then never end.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
