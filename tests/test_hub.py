"""The stream hub's contract, run against every implementation.

`memory`: the in-process hub. `redis-local`: the Redis hub, followed on the node that writes
(the usual case: the response that started the stream). `redis-remote`: two Redis hubs
sharing one Redis, one writing and one following, as two nodes behind a load balancer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from streamchat.hub import (
    Batch,
    Hooks,
    MemoryHub,
    StreamHub,
    StreamNotFound,
    Subscription,
)
from streamchat.hub.local import Changes
from streamchat.hub.redis import RedisHub

from .redisserver import SHARED_URL


@dataclass
class Nodes:
    """Where a test writes its streams, and where it follows them."""

    writer: StreamHub
    reader: StreamHub

    @property
    def same_node(self) -> bool:
        return self.writer is self.reader


MakeNodes = Callable[..., Awaitable[Nodes]]


def redis_hub(
    prefix: str, *, ttl: float = 60, outage: float = 5, url: str = SHARED_URL
) -> RedisHub:
    return RedisHub(
        url,
        key_prefix=prefix,
        ttl_seconds=ttl,
        outage_seconds=outage,
        max_connections=4,
        max_events=100_000,
    )


@pytest_asyncio.fixture(params=["memory", "redis-local", "redis-remote"])
async def make_nodes(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[MakeNodes]:
    hubs: list[StreamHub] = []

    async def make(ttl: float = 60) -> Nodes:
        prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"
        writer: StreamHub
        if request.param == "memory":
            writer = MemoryHub(ttl_seconds=ttl, retain_bytes=1 << 20)
        else:
            writer = redis_hub(prefix, ttl=ttl)
        reader = redis_hub(prefix, ttl=ttl) if request.param == "redis-remote" else writer
        for hub in {id(writer): writer, id(reader): reader}.values():
            await hub.start()
            hubs.append(hub)
        return Nodes(writer, reader)

    yield make
    for hub in hubs:
        await hub.close()


async def read_all(sub: Subscription, seconds: float = 5, idle: float = 1) -> list[Batch]:
    """Every batch up to the end of the stream."""
    batches: list[Batch] = []
    async with asyncio.timeout(seconds):
        while not batches or not batches[-1].ended:
            batch = await sub.next(idle)
            if batch is not None and (batch.payloads or batch.ended):
                batches.append(batch)
    return batches


async def read_count(sub: Subscription, count: int, seconds: float = 5) -> list[Batch]:
    """Batches until `count` events have come."""
    batches: list[Batch] = []
    async with asyncio.timeout(seconds):
        while sum(len(b.payloads) for b in batches) < count:
            batch = await sub.next(1)
            if batch is not None and batch.payloads:
                batches.append(batch)
    return batches


def flatten(batches: list[Batch]) -> list[tuple[int, bytes]]:
    """(index, payload) pairs, checking that batches join without gaps or overlaps."""
    pairs: list[tuple[int, bytes]] = []
    for batch in batches:
        if pairs:
            assert batch.first_index == pairs[-1][0] + 1
        pairs.extend((batch.first_index + i, p) for i, p in enumerate(batch.payloads))
    return pairs


async def eventually(check: Callable[[], bool], seconds: float = 3) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_replay_after_n_then_end(make_nodes: MakeNodes) -> None:
    nodes = await make_nodes()
    await nodes.writer.create("s", Hooks())
    for payload in (b"0", b"1", b"2"):
        nodes.writer.append("s", payload)
    nodes.writer.append("s", b"3", last=True)
    sub = await nodes.reader.subscribe("s", after=1)
    assert flatten(await read_all(sub)) == [(2, b"2"), (3, b"3")]


async def test_follow_live_and_ping_timeout(make_nodes: MakeNodes) -> None:
    nodes = await make_nodes()
    await nodes.writer.create("s", Hooks())
    sub = await nodes.reader.subscribe("s", after=-1)
    assert await sub.next(0.05) is None  # silence: the response sends a ping
    waiter = asyncio.create_task(read_count(sub, 2))
    await asyncio.sleep(0.01)
    nodes.writer.append("s", b"a")
    nodes.writer.append("s", b"b")
    batches = await waiter
    assert flatten(batches) == [(0, b"a"), (1, b"b")]
    assert not batches[-1].ended
    if nodes.same_node:
        assert len(batches) == 1  # events ready together come as one batch


async def test_many_events_arrive_in_order_without_gaps(make_nodes: MakeNodes) -> None:
    nodes = await make_nodes()
    await nodes.writer.create("s", Hooks())
    early = await nodes.reader.subscribe("s", after=-1)
    payloads = [b"e%d" % i for i in range(500)]
    for i, payload in enumerate(payloads):
        nodes.writer.append("s", payload, last=i == len(payloads) - 1)
        if i % 50 == 0:
            await asyncio.sleep(0.002)  # in several rounds, some events together
    late = await nodes.reader.subscribe("s", after=199)
    assert flatten(await read_all(early)) == list(enumerate(payloads))
    assert flatten(await read_all(late)) == list(enumerate(payloads))[200:]


async def test_extend_appends_a_read_s_events_in_order_between_single_appends(
    make_nodes: MakeNodes,
) -> None:
    nodes = await make_nodes()
    await nodes.writer.create("s", Hooks())
    live = await nodes.reader.subscribe("s", after=-1)
    nodes.writer.append("s", b"start")
    nodes.writer.extend("s", [b"a", b"b", b"c"])
    await asyncio.sleep(0.002)
    nodes.writer.extend("s", [b"d"])
    nodes.writer.append("s", b"end", last=True)
    late = await nodes.reader.subscribe("s", after=1)
    expected = list(enumerate([b"start", b"a", b"b", b"c", b"d", b"end"]))
    assert flatten(await read_all(live)) == expected
    assert flatten(await read_all(late)) == expected[2:]


async def test_last_follower_leaving_an_unfinished_stream_calls_on_idle(
    make_nodes: MakeNodes,
) -> None:
    nodes = await make_nodes()
    idle: list[str] = []
    await nodes.writer.create("s", Hooks(on_idle=lambda: idle.append("s")))
    first, second = await nodes.reader.subscribe("s", -1), await nodes.reader.subscribe("s", -1)
    assert await nodes.writer.followers("s") == 2
    await first.close()
    await asyncio.sleep(0.1)
    assert idle == []
    assert await nodes.writer.followers("s") == 1
    await second.close()
    await second.close()  # closing twice counts once
    await eventually(lambda: idle == ["s"])
    assert await nodes.writer.followers("s") == 0


async def test_finished_stream_does_not_call_on_idle(make_nodes: MakeNodes) -> None:
    nodes = await make_nodes()
    idle: list[str] = []
    await nodes.writer.create("s", Hooks(on_idle=lambda: idle.append("s")))
    sub = await nodes.reader.subscribe("s", -1)
    nodes.writer.append("s", b"end", last=True)
    await read_all(sub)
    await sub.close()
    await asyncio.sleep(0.1)
    assert idle == []


async def test_a_resume_at_or_past_the_end_of_a_finished_stream_ends_at_once_with_its_end(
    make_nodes: MakeNodes,
) -> None:
    # An EventSource reconnecting after the end, or any `after=` at the last index: on
    # Redis this once waited (pinging) until the stream expired, ten minutes later.
    nodes = await make_nodes()
    await nodes.writer.create("s", Hooks())
    nodes.writer.append("s", b"0")
    nodes.writer.append("s", b"end", last=True)
    await read_all(await nodes.reader.subscribe("s", -1))  # the end has been shared
    for after in (1, 2, 10**9):
        sub = await nodes.reader.subscribe("s", after)
        async with asyncio.timeout(1):
            batch = await sub.next(30)
        await sub.close()
        assert batch == Batch(1, [b"end"], True), after


async def test_unknown_stream(make_nodes: MakeNodes) -> None:
    nodes = await make_nodes()
    with pytest.raises(StreamNotFound):
        await nodes.reader.subscribe("nope", -1)
    with pytest.raises(StreamNotFound):
        await nodes.reader.request_cancel("nope")
    assert await nodes.reader.followers("nope") == 0


async def test_cancel_reaches_the_writing_node_until_the_stream_ends(
    make_nodes: MakeNodes,
) -> None:
    nodes = await make_nodes()
    cancelled: list[str] = []
    await nodes.writer.create("s", Hooks(on_cancel=lambda: cancelled.append("s")))
    nodes.writer.append("s", b"a")
    assert await nodes.reader.request_cancel("s") is True
    await eventually(lambda: cancelled == ["s"])
    nodes.writer.append("s", b"end", last=True)
    await read_all(await nodes.reader.subscribe("s", -1))  # the end has been shared
    assert await nodes.reader.request_cancel("s") is False
    assert cancelled == ["s"]


async def test_finished_streams_expire_after_ttl(make_nodes: MakeNodes) -> None:
    nodes = await make_nodes(ttl=0.3)
    await nodes.writer.create("s", Hooks())
    await asyncio.sleep(0.5)  # a live stream does not expire, however long it runs
    nodes.writer.append("s", b"x", last=True)
    await read_all(await nodes.reader.subscribe("s", -1))
    await asyncio.sleep(0.7)
    with pytest.raises(StreamNotFound):
        await nodes.reader.subscribe("s", -1)


def memory_hub(ttl: float = 60, retain: int = 1 << 20) -> MemoryHub:
    return MemoryHub(ttl_seconds=ttl, retain_bytes=retain)


async def test_memory_sweep_forgets_expired_streams() -> None:
    h = memory_hub(ttl=0.05)
    await h.create("s", Hooks())
    h.append("s", b"x", last=True)
    h.sweep()
    await h.subscribe("s", -1)
    await asyncio.sleep(0.06)
    h.sweep()
    with pytest.raises(StreamNotFound):
        await h.subscribe("s", -1)


async def test_memory_retention_budget_evicts_oldest_finished_streams_only() -> None:
    h = memory_hub(retain=10)
    for name in ("a", "b", "live"):
        await h.create(name, Hooks())
    h.append("live", b"x" * 100)  # live streams are never evicted
    h.append("a", b"123456", last=True)
    h.append("b", b"123456", last=True)  # 12 bytes finished > 10: "a" goes
    with pytest.raises(StreamNotFound):
        await h.subscribe("a", -1)
    await h.subscribe("b", -1)
    await h.subscribe("live", -1)


async def test_waits_give_up_after_silence_not_while_news_keeps_coming() -> None:
    changes = Changes()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await changes.wait(0.05) is False  # silence
    assert 0.045 <= loop.time() - started < 0.5

    async def talk() -> None:
        for _ in range(15):
            await asyncio.sleep(0.02)
            changes.notify()

    talker = asyncio.create_task(talk())
    woken = [await changes.wait(0.1) for _ in range(15)]  # news every 20 ms, patience 100 ms
    await talker
    assert woken == [True] * 15


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    changes = Changes()
    gone = asyncio.create_task(changes.wait(1))
    stays = asyncio.create_task(changes.wait(1))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    changes.notify()
    assert await stays is True
    assert gone.cancelled()
