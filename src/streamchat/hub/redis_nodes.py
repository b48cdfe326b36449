"""Several nodes: each one beats in Redis, and the others notice when one stops (kill -9).

Every node sets `<prefix>alive:<node>` with a time-to-live of STREAMCHAT_NODE_TIMEOUT_SECONDS,
renewed four times per period, and with it the set of the streams it writes
(`<prefix>streams:<node>`, rewritten at each beat) and its name in `<prefix>nodes`. Every
node also looks, as often, at the streams it follows from elsewhere (its mirrors), and at
the nodes of `<prefix>nodes`: a stream whose owner's key has expired, and that has not
ended, is an orphan. One node takes it (`SET … NX` on `<prefix>{id}:reaped`) and ends it for every
follower on every node: it writes the stream's final event into Redis as the owner would
have (the next entry, the `ended` flag, the live message), and has the answer marked
`interrupted` in the database. The event and the database are the service's business, so
the hub asks an `Orphans` handler for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol, cast

import redis.asyncio as redis

from .base import Batch
from .redis_wire import (
    DATA_FIELD,
    END_FIELD,
    REDIS_ERRORS,
    Keys,
    encode_batch,
    entry_id,
    entry_index,
)

log = logging.getLogger(__name__)

_Entry = tuple[bytes, dict[bytes, bytes]]  # a Redis Stream entry: its id, its fields


class Orphans(Protocol):
    """What the service does with a stream whose writing node died."""

    def final_event(self, opening: bytes, index: int) -> bytes | None:
        """The event that ends the stream at `index`, from its first event (None: none)."""
        ...

    async def orphaned(self, opening: bytes) -> None:
        """The stream whose first event is `opening` has been ended: record it."""
        ...


class Heartbeat:
    """One node's beat, and its watch over the owners of the streams it follows."""

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
        self._timeout_ms = max(int(timeout_seconds * 1000), 1)
        self._ttl_ms = max(int(ttl_seconds * 1000), 1)
        self.orphans: Orphans | None = None

    def alive_key(self, node_id: str) -> str:
        """The key that exists while `node_id` beats."""
        return f"{self._keys.prefix}alive:{node_id}"

    def _streams_key(self, node_id: str) -> str:
        """The set of the streams `node_id` was writing at its last beat."""
        return f"{self._keys.prefix}streams:{node_id}"

    async def beat(self, owned: Iterable[str] = ()) -> None:
        """Say this node is alive for one more timeout, and which streams it writes."""
        streams = self._streams_key(self._node_id)
        written = list(owned)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self.alive_key(self._node_id), b"1", px=self._timeout_ms)
            pipe.sadd(self._keys.prefix + "nodes", self._node_id)
            pipe.delete(streams)
            if written:
                pipe.sadd(streams, *written)
            await pipe.execute()

    async def run(
        self, owned: Callable[[], Iterable[str]], followed: Callable[[], Iterable[str]]
    ) -> None:
        """Beat and watch forever: `owned` names the streams written here, `followed` those
        followed here from elsewhere."""
        while True:
            try:
                await self.beat(owned())
                for stream_id in list(followed()):
                    await self._check(stream_id)
                await self._check_nodes()
            except REDIS_ERRORS:
                pass  # out of reach: the listener reports it; beat again next period
            except Exception:  # a bug must not stop the beat, or every node takes us for dead
                log.exception("heartbeat: round failed")
            _raise_if_cancelled()
            await asyncio.sleep(self._timeout_ms / 4000)

    async def _check_nodes(self) -> None:
        """End the streams of every node that stopped beating (its last beat named them),
        once: the node that takes `dead:<node>` does it."""
        nodes = cast(set[bytes], await self._client.smembers(self._keys.prefix + "nodes"))
        for raw in nodes:
            node = raw.decode()
            if node == self._node_id or await self._client.exists(self.alive_key(node)):
                continue
            dead = f"{self._keys.prefix}dead:{node}"
            if not await self._client.set(dead, self._node_id, nx=True, px=self._ttl_ms):
                continue
            streams = cast(set[bytes], await self._client.smembers(self._streams_key(node)))
            log.warning("node %s stopped beating: ending its %d stream(s)", node, len(streams))
            for stream_id in streams:
                await self._check(stream_id.decode())
            await self._client.delete(self._streams_key(node))
            await self._client.srem(self._keys.prefix + "nodes", node)

    async def _check(self, stream_id: str) -> None:
        fields = await self._client.hmget(self._keys.meta(stream_id), ["owner", "ended"])
        owner, ended = cast(list[bytes | None], fields)
        if owner is None or ended is not None or owner.decode() == self._node_id:
            return
        if await self._client.exists(self.alive_key(owner.decode())):
            return
        reaped = f"{self._keys.prefix}{{{stream_id}}}:reaped"
        if not await self._client.set(reaped, self._node_id, nx=True, px=self._ttl_ms):
            return  # another node ends it
        log.warning("stream %s: its node %s stopped beating; ending it", stream_id, owner)
        await self._end(stream_id)

    async def _end(self, stream_id: str) -> None:
        events = self._keys.events(stream_id)
        first = cast(list[_Entry], await self._client.xrange(events, "-", "+", count=1))
        last = cast(list[_Entry], await self._client.xrevrange(events, "+", "-", count=1))
        if not first or not last or self.orphans is None:
            return
        opening = first[0][1][DATA_FIELD]
        index = entry_index(last[0][0]) + 1
        payload = self.orphans.final_event(opening, index)
        if payload is not None:
            meta = self._keys.meta(stream_id)
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xadd(events, {DATA_FIELD: payload, END_FIELD: b"1"}, id=entry_id(index))
                pipe.hset(meta, "ended", "1")
                pipe.pexpire(events, self._ttl_ms)
                pipe.pexpire(meta, self._ttl_ms)
                pipe.publish(
                    self._keys.live(stream_id), encode_batch(Batch(index, [payload], True))
                )
                await pipe.execute()
        await self.orphans.orphaned(opening)


def _raise_if_cancelled() -> None:
    # redis-py may turn a cancellation in the middle of a command into a connection error,
    # which the loop above swallows: the task would then never end.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
