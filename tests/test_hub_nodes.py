"""Liveness on the Redis hub (hub/redis_nodes.py): a busy node is not a dead one, a dead node
is noticed, and a stream ended for a dead node takes no more events."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis as sync_redis
import redis.asyncio as redis

from streamchat.hub import Batch, Hooks, Subscription
from streamchat.hub.redis import RedisHub

from .redisserver import SHARED_URL
from .test_hub import eventually, flatten, read_all, read_count

TIMEOUT = 3.0  # STREAMCHAT_NODE_TIMEOUT_SECONDS here (10 by default)
FOLLOWED = 5000
# Four timeouts of a busy loop: the old beat checked every followed stream (two round trips
# each, 20,000 loop turns of 2 ms here) before renewing, and let its key expire in the first.
# (60 s of the default timeout are six: the same proof, on a clock five times slower.)
WATCHED = 4 * TIMEOUT

# Node C, in a process of its own so that it can be killed (-9): it writes stream "x".
_NODE_C = """
import asyncio, sys
from streamchat.hub import Hooks
from streamchat.hub.redis import RedisHub

async def main() -> None:
    hub = RedisHub(sys.argv[1], key_prefix=sys.argv[2], ttl_seconds=60, outage_seconds=5,
                   max_connections=4, max_events=1000, node_timeout_seconds=float(sys.argv[3]))
    await hub.start()
    await hub.create("x", Hooks())
    hub.append("x", b"opening")
    await asyncio.sleep(0.5)  # Redis has it
    print(hub.node_id, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def alive_key(prefix: str, node_id: str) -> str:
    """The key that exists while the node beats (docs/scaling.md)."""
    return f"{prefix}alive:{node_id}"


class Orphans:
    """Ends orphans with an `error` event of their index, and notes them."""

    def __init__(self) -> None:
        self.ended: list[bytes] = []

    def final_event(self, opening: bytes, index: int) -> bytes | None:
        return b"error %d" % index

    async def orphaned(self, opening: bytes) -> None:
        self.ended.append(opening)


class Nodes:
    """Redis hubs in this process, closed at the end of the test."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.opened: list[RedisHub] = []

    async def open(self, node_timeout: float = TIMEOUT) -> RedisHub:
        hub = RedisHub(
            SHARED_URL,
            key_prefix=self.prefix,
            ttl_seconds=60,
            outage_seconds=5,
            max_connections=16,
            max_events=1000,
            node_timeout_seconds=node_timeout,
        )
        await hub.start()
        self.opened.append(hub)
        return hub


@pytest_asyncio.fixture
async def nodes(redis_prefix: str) -> AsyncIterator[Nodes]:
    made = Nodes(f"{redis_prefix}{uuid.uuid4().hex[:8]}:")
    yield made
    for hub in made.opened:
        await hub.close()


def busy_turn() -> None:
    """A turn of the event loop that takes 2 ms, as on a loaded node."""
    time.sleep(0.002)


async def busy_loop() -> None:
    while True:
        busy_turn()
        await asyncio.sleep(0)


def watch_key(key: str, stop: threading.Event, missing: list[float]) -> None:
    """From another thread (the loop is busy): note every moment `key` does not exist."""
    client = sync_redis.Redis.from_url(SHARED_URL)
    try:
        while not stop.wait(0.02):
            if not client.exists(key):
                missing.append(time.monotonic())
    finally:
        client.close()


@pytest.mark.timeout(180)
async def test_a_node_following_5000_streams_on_a_busy_loop_is_never_taken_for_dead(
    nodes: Nodes,
) -> None:
    writer, follower = await nodes.open(), await nodes.open()
    orphans = Orphans()
    follower.watch_orphans(orphans)
    names = [f"s{i}" for i in range(FOLLOWED)]
    await asyncio.gather(*(writer.create(name, Hooks()) for name in names))
    for name in names:
        writer.append(name, b"opening")
    subscriptions: list[Subscription] = []
    for first in range(0, FOLLOWED, 100):  # a few at a time: each waits for the pool
        chunk = names[first : first + 100]
        subscriptions += await asyncio.gather(*(follower.subscribe(n, -1) for n in chunk))
    assert len(subscriptions) == FOLLOWED
    node_c = subprocess.Popen(  # noqa: ASYNC220 - started once, not waited for here
        [sys.executable, "-c", _NODE_C, SHARED_URL, nodes.prefix, str(TIMEOUT)],
        stdout=subprocess.PIPE,
    )
    try:
        assert node_c.stdout is not None
        await asyncio.to_thread(node_c.stdout.readline)
        orphan = await follower.subscribe("x", -1)
        stop, missing = threading.Event(), list[float]()
        watcher = threading.Thread(
            target=watch_key, args=(alive_key(nodes.prefix, follower.node_id), stop, missing)
        )
        watcher.start()
        busy = asyncio.create_task(busy_loop())
        started = time.monotonic()
        try:
            await asyncio.sleep(WATCHED / 2)
            node_c.kill()
            killed = time.monotonic()
            try:
                final = await read_all(orphan, seconds=TIMEOUT * 4, idle=TIMEOUT)
            except TimeoutError:
                final = []
            noticed = time.monotonic() - killed
            await asyncio.sleep(max(started + WATCHED - time.monotonic(), 0))
        finally:
            busy.cancel()
            stop.set()
            await asyncio.to_thread(watcher.join)
    finally:
        node_c.kill()
        node_c.wait()
        if node_c.stdout is not None:
            node_c.stdout.close()
    assert not missing, f"taken for dead {missing[0] - started:.1f} s into the busy loop"
    # The killed node is noticed within the timeout (and a quarter, the watch's period),
    # with room for the busy loop.
    assert flatten(final) == [(0, b"opening"), (1, b"error 1")]
    assert noticed < TIMEOUT * 2, noticed
    assert orphans.ended == [b"opening"]
    await orphan.close()  # the 5,000 others are closed with the hub


async def test_a_stream_ended_for_its_node_takes_no_more_of_its_events(nodes: Nodes) -> None:
    # A node taken for dead went on writing: Redis had an error event, then more deltas.
    # The writer beats every 15 s: its key, deleted here, stays away until the follower,
    # watching every half second, has found it missing.
    writer, follower = await nodes.open(node_timeout=60), await nodes.open()
    lost: list[str] = []
    await writer.create("s", Hooks(on_lost=lambda: lost.append("s")))
    writer.append("s", b"0")
    subscription: Subscription = await follower.subscribe("s", -1)
    assert flatten(await read_count(subscription, 1)) == [(0, b"0")]
    orphans = Orphans()
    follower.watch_orphans(orphans)
    client = redis.Redis.from_url(SHARED_URL)
    try:
        await client.delete(alive_key(nodes.prefix, writer.node_id))  # as if it had expired
        # The next watch round ends it, before the writer's next beat (a quarter timeout).
        await eventually(lambda: orphans.ended == [b"0"], seconds=TIMEOUT)
    finally:
        await client.aclose()
    writer.append("s", b"1")  # the writer, taken for dead, goes on
    await eventually(lambda: lost == ["s"])  # and is told its stream is lost
    writer.append("s", b"2", last=True)
    rest = await read_all(subscription)
    assert flatten(rest) == [(1, b"error 1")]  # nothing after the error event
    await subscription.close()
    late = await follower.subscribe("s", -1)
    assert flatten(await read_all(late)) == [(0, b"0"), (1, b"error 1")]
    await late.close()
    assert rest[-1] == Batch(1, [b"error 1"], True)
