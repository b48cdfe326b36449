"""The stream hub on Redis: a stream written on one node, followed and stopped from any.

The node that runs a generation writes its stream: it keeps the events in process (its own
followers read them there, as with `MemoryHub`) and copies them to Redis behind the
generation (`redis_writer.py`). Followers on other nodes read the copy through one
`Mirror` per stream and node, fed by one pub/sub connection per node (`redis_mirror.py`,
`redis_listener.py`), so a node needs a handful of Redis connections whatever the number
of streams. Cancel requests and "last follower left" notices reach the writing node on its
control channel. Key layout and scripts: `redis_wire.py`.

Redis commands per token, on the writing node: one `XADD`, plus one `PUBLISH` per stream and
round, all run by one script call per round (one round trip, one reply, for every stream
with news); on a following node: none (one pub/sub message per stream and round arrives).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import cast

from .base import Hooks, HubUnavailable, StreamNotFound, Subscription
from .local import LocalSubscription
from .redis_listener import Listener
from .redis_mirror import Mirror, RemoteSubscription
from .redis_nodes import Heartbeat, Orphans, Watch
from .redis_wire import (
    CANCEL,
    FOLLOW,
    REDIS_ERRORS,
    REGISTER,
    Keys,
    connect,
    followers,
    retrying,
)
from .redis_writer import Replicator

log = logging.getLogger(__name__)


class RedisHub:
    """The shared hub, for several nodes (processes or machines) on one Redis."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str,
        ttl_seconds: float,
        outage_seconds: float,
        max_connections: int,
        max_events: int,
        node_timeout_seconds: float = 10.0,
    ) -> None:
        self.node_id = uuid.uuid4().hex
        self._keys = Keys(key_prefix)
        self._outage = outage_seconds
        timeout = min(5.0, outage_seconds)
        self._client = connect(url, max_connections=max_connections, timeout=timeout)
        self._listen_client = connect(url, max_connections=1, timeout=timeout)
        # The beat's own connection, with a deadline short enough to beat again in time.
        self._beat_client = connect(
            url, max_connections=1, timeout=min(timeout, node_timeout_seconds / 4)
        )
        self._follow = self._client.register_script(FOLLOW)
        self._cancel = self._client.register_script(CANCEL)
        self._register = self._client.register_script(REGISTER)
        self._writer = Replicator(
            self._client,
            self._keys,
            self.node_id,
            ttl_seconds=ttl_seconds,
            outage_seconds=outage_seconds,
            max_events=max_events,
        )
        self._listener = Listener(
            self._listen_client,
            self._keys.node(self.node_id),
            outage_seconds=outage_seconds,
            on_control=self._on_control,
            on_connect=self._on_connect,
            on_outage=self._on_outage,
        )
        self._mirrors: dict[str, Mirror] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat = Heartbeat(
            self._beat_client, self._keys.alive(self.node_id), timeout_seconds=node_timeout_seconds
        )
        self._watch = Watch(
            self._client,
            self._keys,
            self.node_id,
            timeout_seconds=node_timeout_seconds,
            ttl_seconds=ttl_seconds,
        )

    def watch_orphans(self, orphans: Orphans) -> None:
        """Who ends the streams of dead nodes that this node follows (redis_nodes.py)."""
        self._watch.orphans = orphans

    def _writing(self) -> list[str]:
        """The streams this node writes that have not ended (its watch publishes them)."""
        return [sid for sid, owned in self._writer.owned.items() if not owned.local.done]

    async def ping(self) -> bool:
        """Whether Redis answers now (for /readyz)."""
        try:
            return bool(await self._client.ping())
        except REDIS_ERRORS:
            return False

    async def create(self, stream_id: str, hooks: Hooks, uid: int | None = None) -> None:
        """Create a stream written from this node, owned by `uid`. Raises `HubUnavailable`."""
        await self._writer.create(stream_id, hooks, uid)

    async def owner(self, stream_id: str) -> int | None:
        """The uid that owns the stream, from its meta in Redis when another node writes it."""
        owned = self._writer.owned.get(stream_id)
        if owned is not None:
            return owned.local.uid
        meta = self._keys.meta(stream_id)
        exists, uid = await retrying(lambda: self._owner_of(meta), budget=self._outage)
        if not exists:
            raise StreamNotFound(stream_id)
        return int(uid) if uid else None

    async def _owner_of(self, meta: str) -> tuple[bool, bytes | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.exists(meta)
            pipe.hget(meta, "uid")
            exists, uid = await pipe.execute()
        return bool(exists), uid

    def append(self, stream_id: str, payload: bytes, *, last: bool = False) -> None:
        """Append the next event; Redis gets it shortly after, in order."""
        self._writer.append(stream_id, payload, last)

    def extend(self, stream_id: str, payloads: list[bytes]) -> None:
        """Append several events at once (none of them the last); Redis gets them shortly
        after, in order."""
        self._writer.extend(stream_id, payloads)

    async def subscribe(self, stream_id: str, after: int) -> Subscription:
        """Follow events with index > `after`, from whichever node writes them."""
        owned = self._writer.owned.get(stream_id)
        if owned is not None:
            return LocalSubscription(owned.local, after)
        state = await self._follow_change(stream_id, +1)
        if state is None:
            raise StreamNotFound(stream_id)
        try:
            mirror = await self._mirror(stream_id, after, ended=bool(state[1]))
        except BaseException:
            await self._unfollow(stream_id)
            raise
        return RemoteSubscription(mirror, after, self._release)

    async def followers(self, stream_id: str) -> int:
        """Followers here (of a stream written here) plus those on other nodes; raises
        `HubUnavailable` when those cannot be counted (not a count of this node's alone,
        which once had a stream followed elsewhere cancelled)."""
        owned = self._writer.owned.get(stream_id)
        here = owned.local.followers if owned is not None else 0
        try:
            meta = await self._client.hgetall(self._keys.meta(stream_id))
        except REDIS_ERRORS as exc:
            raise HubUnavailable(f"cannot count the followers elsewhere: {exc}") from exc
        return here + followers(cast(dict[bytes, bytes], meta))

    async def request_cancel(self, stream_id: str) -> bool:
        """Have the writing node stop the generation; False if the stream has ended."""
        owned = self._writer.owned.get(stream_id)
        if owned is not None:
            if owned.local.done:
                return False
            owned.cancel()
            return True
        meta = self._keys.meta(stream_id)
        args = [self._keys.node_prefix, stream_id]
        state = await retrying(lambda: self._cancel(keys=[meta], args=args), budget=self._outage)
        if state < 0:
            raise StreamNotFound(stream_id)
        return bool(state)

    async def start(self) -> None:
        """Start copying, refreshing and listening; wait (briefly) to be listening.

        A node that serves before it listens would miss the cancel requests and the notices
        of followers leaving meant for it. Redis being down does not stop the start: the
        listener goes on trying, and requests meanwhile wait for Redis like any other.
        """
        self._tasks = [
            asyncio.create_task(self._writer.run(), name="redis-writer"),
            asyncio.create_task(self._writer.refresh_forever(), name="redis-refresh"),
            asyncio.create_task(self._listener.run(), name="redis-listener"),
            asyncio.create_task(self._listener.sync_forever(), name="redis-subscriptions"),
            asyncio.create_task(self._heartbeat.run(), name="redis-heartbeat"),
            asyncio.create_task(
                self._watch.run(self._writing, lambda: list(self._mirrors)), name="redis-watch"
            ),
        ]
        if not await self._listener.connected(min(5.0, self._outage)):
            log.warning("redis not reachable yet: streams wait for it (up to %gs)", self._outage)

    def stopped(self) -> list[str]:
        """The copying, refreshing and listening tasks that have stopped."""
        return [task.get_name() for task in self._tasks if task.done()]

    async def close(self) -> None:
        """Give Redis the last events (briefly), then stop and disconnect."""
        await self._writer.drain(min(5.0, self._outage))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for mirror in self._mirrors.values():
            mirror.close()
        await self._client.aclose()
        await self._listen_client.aclose()
        await self._beat_client.aclose()

    async def _mirror(self, stream_id: str, after: int, *, ended: bool) -> Mirror:
        mirror = self._mirrors.get(stream_id)
        created = mirror is None
        if mirror is None:
            mirror = Mirror(
                self._client,
                self._keys,
                stream_id,
                base=max(after + 1, 0),
                register=self._register,
                follower_field=self._follower_field,
                outage_seconds=self._outage,
            )
            self._mirrors[stream_id] = mirror
        mirror.followers += 1
        try:
            if created and not ended:
                await self._listener.watch(self._keys.live(stream_id), mirror.on_live)
            await retrying(lambda: mirror.backfill(max(after + 1, 0)), budget=self._outage)
            await retrying(mirror.fill, budget=self._outage)
            if ended and not mirror.done:  # `after` at or past its end: nothing to fill
                await retrying(mirror.find_end, budget=self._outage)
            if mirror.lost is not None:
                raise StreamNotFound(stream_id)
        except BaseException:
            self._drop(mirror)
            raise
        return mirror

    async def _release(self, mirror: Mirror) -> None:
        self._drop(mirror)
        await self._unfollow(mirror.stream_id)

    def _drop(self, mirror: Mirror) -> None:
        mirror.followers -= 1
        if mirror.followers == 0 and self._mirrors.get(mirror.stream_id) is mirror:
            del self._mirrors[mirror.stream_id]
            mirror.close()
            self._listener.unwatch(self._keys.live(mirror.stream_id), mirror.on_live)

    async def _unfollow(self, stream_id: str) -> None:
        try:
            await self._follow_change(stream_id, -1)
        except HubUnavailable as exc:
            log.warning("stream %s: could not record a follower leaving: %s", stream_id, exc)

    async def _follow_change(self, stream_id: str, delta: int) -> list[int] | None:
        meta = self._keys.meta(stream_id)
        args: list[str | int] = [self._follower_field, delta, self._keys.node_prefix, stream_id]
        state: list[int] | None = await retrying(
            lambda: self._follow(keys=[meta], args=args), budget=self._outage
        )
        return state

    @property
    def _follower_field(self) -> str:
        return f"f:{self.node_id}"

    def _on_control(self, message: bytes) -> None:
        kind, _, raw = message.partition(b" ")
        owned = self._writer.owned.get(raw.decode())
        if owned is None or owned.local.done:
            return
        if kind == b"cancel":
            owned.cancel()
        elif kind == b"idle" and owned.local.followers == 0:
            owned.local.hooks.on_idle()

    def _on_connect(self) -> None:
        """(Re)connected: catch up on whatever the pub/sub messages missed meanwhile."""
        for mirror in self._mirrors.values():
            mirror.registered = False
            mirror.request_fill()
        task = asyncio.create_task(self._refresh_after_reconnect(), name="redis-recheck")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _refresh_after_reconnect(self) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self._writer.refresh()

    def _on_outage(self) -> None:
        for mirror in self._mirrors.values():
            mirror.fail("redis out of reach")
