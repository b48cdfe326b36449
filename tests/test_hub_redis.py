"""What only the Redis hub has: batching, recovery, missed messages, outages, connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import cast

import pytest
import pytest_asyncio
import redis.asyncio as redis

from streamchat.hub import Batch, Hooks, HubUnavailable, StreamNotFound, Subscription
from streamchat.hub.redis import RedisHub
from streamchat.hub.redis_wire import FLUSH, Keys, decode_batch, encode_batch

from .redisserver import SHARED_URL, RedisServer
from .test_hub import eventually, flatten, read_all, read_count


class Hubs:
    """Redis hubs for one test, closed at its end."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.opened: list[RedisHub] = []

    async def open(self, url: str = SHARED_URL, **options: float) -> RedisHub:
        settings: dict[str, float] = {"ttl_seconds": 60, "outage_seconds": 5}
        settings.update(options)
        hub = RedisHub(
            url,
            key_prefix=self.prefix,
            ttl_seconds=settings["ttl_seconds"],
            outage_seconds=settings["outage_seconds"],
            max_connections=int(settings.get("max_connections", 4)),
            max_events=int(settings.get("max_events", 100_000)),
        )
        await hub.start()
        self.opened.append(hub)
        return hub


@pytest_asyncio.fixture
async def hubs(redis_prefix: str) -> AsyncIterator[Hubs]:
    made = Hubs(f"{redis_prefix}{uuid.uuid4().hex[:8]}:")
    yield made
    for hub in made.opened:
        await hub.close()


@pytest_asyncio.fixture
async def raw(own_redis: RedisServer) -> AsyncIterator[redis.Redis]:
    """A plain client of the test's own Redis, to look at it or to break things."""
    client = redis.Redis.from_url(own_redis.url)
    yield client
    await client.aclose()


def test_live_messages_round_trip() -> None:
    for batch in (Batch(7, [b"a", b"", b"\n\xff", b"x" * 1000], True), Batch(0, [b"q"], False)):
        assert decode_batch(encode_batch(batch)) == batch


@pytest.mark.parametrize("message", [b"", b"1 0 3\nab", b"x 0 1\na", b"1 0 1,1\nabc"])
def test_malformed_live_messages_are_refused(message: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - one error type for every malformation
        decode_batch(message)


async def test_events_appended_together_go_out_in_one_publish(hubs: Hubs) -> None:
    writer = await hubs.open()
    client = redis.Redis.from_url(SHARED_URL)
    watcher = client.pubsub()
    try:
        await watcher.subscribe(Keys(hubs.prefix).live("s"))
        await writer.create("s", Hooks())
        for i in range(100):  # a burst: nothing awaited in between really waits
            writer.append("s", b"%d" % i, last=i == 99)
        messages: list[Batch] = []
        async with asyncio.timeout(5):
            while not messages or not messages[-1].ended:
                message = await watcher.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    messages.append(decode_batch(message["data"]))
        assert len(messages) == 1
        assert flatten(messages) == [(i, b"%d" % i) for i in range(100)]
    finally:
        await watcher.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def test_a_round_sent_twice_writes_its_events_once(raw: redis.Redis) -> None:
    # What the writer does when a round's reply is lost: it sends the round again.
    flush = raw.register_script(FLUSH)
    keys = Keys("twice:")
    payloads = [b"a", b"b", b"c"]

    async def send(first: int, flags: int, batch: list[bytes]) -> list[int]:
        live = encode_batch(Batch(first, batch, flags & 1 == 1))
        args: list[str | int | bytes] = ["node", 60_000, 1000, keys.live("s")]
        args += [first, len(batch), flags, live, "7", *batch]
        result: list[int] = await flush(keys=[keys.events("s"), keys.meta("s")], args=args)
        return result

    assert await send(0, 2, payloads[:2]) == [1]
    assert await send(0, 2, payloads[:2]) == [1]  # again: refused by id, reported written
    assert await send(2, 1, payloads[2:]) == [1]
    assert await send(2, 1, payloads[2:]) == [1]
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await raw.xrange(keys.events("s")))
    assert [(i, f[b"d"]) for i, f in entries] == [(b"0-1", b"a"), (b"1-1", b"b"), (b"2-1", b"c")]
    assert await raw.hgetall(keys.meta("s")) == {b"owner": b"node", b"uid": b"7", b"ended": b"1"}
    await raw.delete(keys.events("s"))  # lost by Redis: the next round says so
    assert await send(3, 0, [b"d"]) == [0]


async def test_a_stream_lost_by_redis_is_written_again_and_followers_go_on(hubs: Hubs) -> None:
    writer, reader = await hubs.open(), await hubs.open()
    await writer.create("s", Hooks())
    sub = await reader.subscribe("s", -1)
    for i in range(5):
        writer.append("s", b"%d" % i)
    first = await read_count(sub, 5)
    keys = Keys(hubs.prefix)
    client = redis.Redis.from_url(SHARED_URL)
    try:
        await client.delete(keys.events("s"), keys.meta("s"))  # as a restart would
    finally:
        await client.aclose()
    for i in range(5, 10):
        writer.append("s", b"%d" % i, last=i == 9)
    rest = await read_all(sub)
    assert flatten(first + rest) == [(i, b"%d" % i) for i in range(10)]
    late = await reader.subscribe("s", -1)
    assert flatten(await read_all(late)) == [(i, b"%d" % i) for i in range(10)]


async def test_resume_from_trimmed_events_is_not_found(hubs: Hubs) -> None:
    writer = await hubs.open(max_events=10)
    reader = await hubs.open(max_events=10)
    await writer.create("s", Hooks())
    for i in range(600):
        writer.append("s", b"%d" % i, last=i == 599)
        if i % 100 == 0:
            await asyncio.sleep(0.01)  # several rounds: trimming happens as events arrive
    await read_all(await reader.subscribe("s", 590))  # the newest events are still there
    with pytest.raises(StreamNotFound):
        await reader.subscribe("s", -1)


async def test_a_cancel_whose_message_was_missed_is_honoured_after_a_reconnect(
    hubs: Hubs, own_redis: RedisServer, raw: redis.Redis
) -> None:
    writer = await hubs.open(own_redis.url)
    cancelled: list[str] = []
    await writer.create("s", Hooks(on_cancel=lambda: cancelled.append("s")))
    writer.append("s", b"a")
    # What a cancel leaves in Redis, without the message (sent while nobody listened).
    await raw.hset(Keys(hubs.prefix).meta("s"), "cancel", "1")
    await asyncio.sleep(0.1)
    assert cancelled == []
    await raw.client_kill_filter(_type="pubsub")
    await eventually(lambda: cancelled == ["s"])


async def test_a_last_follower_leaving_unheard_is_noticed_after_a_reconnect(
    hubs: Hubs, own_redis: RedisServer, raw: redis.Redis
) -> None:
    writer = await hubs.open(own_redis.url)
    idle: list[str] = []
    await writer.create("s", Hooks(on_idle=lambda: idle.append("s")))
    meta = Keys(hubs.prefix).meta("s")
    await raw.hset(meta, "f:elsewhere", "1")  # a follower on another node ...
    await raw.client_kill_filter(_type="pubsub")
    await asyncio.sleep(0.2)
    assert idle == []  # ... keeps the stream followed
    await raw.hdel(meta, "f:elsewhere")  # it left, and the notice was lost
    await raw.client_kill_filter(_type="pubsub")
    await eventually(lambda: idle == ["s"])


async def test_live_events_missed_while_reconnecting_are_read_back(
    hubs: Hubs, own_redis: RedisServer, raw: redis.Redis
) -> None:
    keys = Keys(hubs.prefix)
    reader = await hubs.open(own_redis.url)
    # A stream as a writer on another node leaves it: the meta, and events with their ids.
    await raw.hset(keys.meta("s"), "owner", "elsewhere")
    await raw.xadd(keys.events("s"), {"d": b"0"}, id="0-1")
    sub = await reader.subscribe("s", -1)
    assert flatten(await read_count(sub, 1)) == [(0, b"0")]
    # Written while the reader's messages were lost: the reader reads them back on reconnect.
    await raw.xadd(keys.events("s"), {"d": b"1"}, id="1-1")
    await raw.xadd(keys.events("s"), {"d": b"2", "e": b"1"}, id="2-1")
    await asyncio.sleep(0.1)
    await raw.client_kill_filter(_type="pubsub")
    # Sooner than the silence after which a follower reads Redis anyway (idle: 10 s).
    assert flatten(await read_all(sub, seconds=3, idle=10)) == [(1, b"1"), (2, b"2")]


async def test_a_follower_that_hears_nothing_reads_redis_when_idle(
    hubs: Hubs, own_redis: RedisServer, raw: redis.Redis
) -> None:
    keys = Keys(hubs.prefix)
    reader = await hubs.open(own_redis.url)
    await raw.hset(keys.meta("s"), "owner", "elsewhere")
    sub = await reader.subscribe("s", -1)
    # The last event, its message lost (no reconnect to tell): found at the next idle timeout.
    await raw.xadd(keys.events("s"), {"d": b"0", "e": b"1"}, id="0-1")
    assert flatten(await read_all(sub, seconds=3, idle=0.2)) == [(0, b"0")]


async def wait_until_failing(sub: Subscription) -> None:
    async with asyncio.timeout(5):
        while True:
            await sub.next(0.2)


async def test_redis_out_of_reach_past_the_budget(hubs: Hubs, own_redis: RedisServer) -> None:
    writer = await hubs.open(own_redis.url, outage_seconds=0.5)
    reader = await hubs.open(own_redis.url, outage_seconds=0.5)
    lost: list[str] = []
    await writer.create("s", Hooks(on_lost=lambda: lost.append("s")))
    sub = await reader.subscribe("s", -1)
    own_redis.kill()
    writer.append("s", b"a")  # never blocks the generation ...
    await eventually(lambda: lost == ["s"])  # ... which is told to end the stream
    local = await writer.subscribe("s", -1)
    assert (await local.next(1)) == Batch(0, [b"a"], False)  # followers here still read
    with pytest.raises(HubUnavailable):  # followers elsewhere are told, not left waiting
        await wait_until_failing(sub)
    with pytest.raises(HubUnavailable):
        await writer.create("t", Hooks())
    with pytest.raises(HubUnavailable):
        await reader.subscribe("s", -1)
    with pytest.raises(HubUnavailable):
        await reader.request_cancel("s")
    with pytest.raises(HubUnavailable):  # elsewhere cannot be counted: not 1, but unknown
        await writer.followers("s")


async def test_a_node_needs_few_connections_whatever_the_number_of_streams(
    hubs: Hubs, own_redis: RedisServer, raw: redis.Redis
) -> None:
    writer = await hubs.open(own_redis.url, max_connections=4)
    reader = await hubs.open(own_redis.url, max_connections=4)
    names = [f"s{i}" for i in range(300)]
    for name in names:
        await writer.create(name, Hooks())
    subs = await asyncio.gather(*(reader.subscribe(name, -1) for name in names))
    waiting = [asyncio.create_task(read_count(sub, 1)) for sub in subs]
    for name in names:
        writer.append(name, b"x")
    await asyncio.gather(*waiting)
    clients = await raw.client_list()
    ours = [c for c in clients if c["cmd"] != "client|list"]
    assert len(ours) <= 2 * (4 + 2)  # per node: its pool for commands, pub/sub, heartbeat
    channels = await raw.pubsub_numsub(*(Keys(hubs.prefix).live(n) for n in names[:3]))
    assert [count for _, count in channels] == [1, 1, 1]  # one reader node, one subscription


async def test_a_resume_far_past_the_end_costs_nothing_and_misleads_nobody(hubs: Hubs) -> None:
    # A follower's `after` of 10**9 once set the node's copy to start there; the next
    # follower from the beginning then had it build a list of 10**9 integers on the loop.
    writer, reader = await hubs.open(), await hubs.open()
    await writer.create("far", Hooks())
    for i in range(5):
        writer.append("far", b"%d" % i)
    far = await reader.subscribe("far", 10**9)
    start = await reader.subscribe("far", -1)
    writer.append("far", b"5", last=True)
    async with asyncio.timeout(5):
        got = flatten(await read_all(start))
        assert got == [(i, b"%d" % i) for i in range(6)]
        assert flatten(await read_all(far)) == [(5, b"5")]  # its end, not a wait
    await far.close()
    await start.close()


async def test_a_bad_live_message_does_not_stop_the_listener(hubs: Hubs) -> None:
    writer, reader = await hubs.open(), await hubs.open()
    await writer.create("bad", Hooks())
    writer.append("bad", b"0")
    sub = await reader.subscribe("bad", -1)
    client = redis.Redis.from_url(SHARED_URL)
    try:
        await client.publish(Keys(hubs.prefix).live("bad"), b"garbage")
    finally:
        await client.aclose()
    writer.append("bad", b"1", last=True)
    assert flatten(await read_all(sub)) == [(0, b"0"), (1, b"1")]
    assert reader.stopped() == []
    assert writer.stopped() == []
    await sub.close()


async def test_a_stopped_background_task_is_reported(hubs: Hubs) -> None:
    hub = await hubs.open()
    assert hub.stopped() == []
    listener = next(t for t in hub._tasks if t.get_name() == "redis-listener")  # the fault
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    assert hub.stopped() == ["redis-listener"]
