"""Two nodes on one Redis: resume, cancel and the detach grace work across nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest_asyncio

from .fakeupstream import FakeUpstream, Script
from .nodes import assert_contiguous, node_env, read_events, resume, start_chat, start_nodes, text
from .redisserver import SHARED_URL
from .servers import ServerProcess
from .sseclient import FrameReader, events

SLOW = Script(tokens=[f"w{i} " for i in range(30)], delay=0.05)
Pair = tuple[ServerProcess, ServerProcess]


@pytest_asyncio.fixture(scope="module")
async def make_pair(
    upstream: FakeUpstream, redis_prefix: str
) -> AsyncIterator[Callable[[str], Awaitable[Pair]]]:
    """Two nodes (A, B) with this detach grace, started once per module."""
    pairs: dict[str, Pair] = {}

    async def make(grace: str) -> Pair:
        if grace not in pairs:
            env = node_env(
                upstream, SHARED_URL, f"{redis_prefix}g{grace}:", detach_grace_seconds=grace
            )
            a, b = await start_nodes(2, env)
            pairs[grace] = (a, b)
        return pairs[grace]

    yield make
    for pair in pairs.values():
        for node in pair:
            node.stop()


async def test_resume_on_another_node_gets_exactly_the_remaining_events(
    http: aiohttp.ClientSession, make_pair: Callable[[str], Awaitable[Pair]], upstream: FakeUpstream
) -> None:
    a, b = await make_pair("5")
    upstream.reset(SLOW)
    response, seen = await read_events(http, a.url, 5)
    response.close()
    assert [e["index"] for e in seen] == [0, 1, 2, 3, 4]
    rest = await resume(http, b.url, seen[0]["stream_id"], after=4)
    got = seen + rest
    assert_contiguous(got)
    assert rest[0]["index"] == 5
    assert text(got) == "".join(SLOW.tokens)
    assert got[-1]["type"] == "end"
    assert got[-1]["finish_reason"] == "stop"
    assert "Traceback" not in a.log()
    assert "Traceback" not in b.log()


async def test_a_resume_at_the_end_of_a_finished_stream_ends_within_a_second_on_any_node(
    http: aiohttp.ClientSession, make_pair: Callable[[str], Awaitable[Pair]], upstream: FakeUpstream
) -> None:
    # An EventSource reconnecting after `end` sends `Last-Event-ID` of the end: on Redis the
    # response once pinged until the stream expired (600 s), with no final event.
    a, b = await make_pair("5")
    upstream.reset()
    response, seen = await read_events(http, a.url, 1)
    got = seen + events(await FrameReader(response).all())
    response.close()
    end = got[-1]
    assert end["type"] == "end"
    for node in (a, b):
        started = time.monotonic()
        headers = {"Last-Event-ID": str(end["index"])}
        url = f"{node.url}/api/chat/streams/{got[0]['stream_id']}"
        async with http.get(url, headers=headers) as resumed:
            assert resumed.status == 200
            again = events(await asyncio.wait_for(FrameReader(resumed).all(), 1))
        assert time.monotonic() - started < 1
        assert again == [end]  # the stream's own end, once more


async def test_cancel_on_another_node_stops_the_generation_within_500_ms(
    http: aiohttp.ClientSession, make_pair: Callable[[str], Awaitable[Pair]], upstream: FakeUpstream
) -> None:
    a, b = await make_pair("5")
    response, seen, stream_id, record = await start_chat(
        http, a.url, upstream, Script(tokens=[f"w{i} " for i in range(100)], delay=0.1), 2
    )
    asked = time.monotonic()
    async with http.post(f"{b.url}/api/chat/streams/{stream_id}/cancel") as cancel:
        assert cancel.status == 200
        assert (await cancel.json())["data"] == {"stream_id": stream_id, "cancelled": True}
    await asyncio.wait_for(record.closed.wait(), timeout=2)
    assert record.closed_at is not None
    assert record.closed_at - asked < 0.5
    got = seen + events(await FrameReader(response).all())
    response.close()
    assert_contiguous(got)
    assert got[-1]["finish_reason"] == "cancelled"
    # Followed from B, the stream ends the same way; a second cancel finds it ended.
    assert await resume(http, b.url, stream_id, after=-1) == got
    async with http.post(f"{b.url}/api/chat/streams/{stream_id}/cancel") as again:
        assert (await again.json())["data"]["cancelled"] is False


async def test_unknown_stream_is_404_on_every_node(
    http: aiohttp.ClientSession, make_pair: Callable[[str], Awaitable[Pair]]
) -> None:
    for node in await make_pair("5"):
        async with http.get(f"{node.url}/api/chat/streams/nope") as response:
            assert response.status == 404
        async with http.post(f"{node.url}/api/chat/streams/nope/cancel") as response:
            assert response.status == 404
            assert (await response.json())["code"] == 65


async def test_a_follower_on_another_node_keeps_the_generation_past_the_grace(
    http: aiohttp.ClientSession, make_pair: Callable[[str], Awaitable[Pair]], upstream: FakeUpstream
) -> None:
    a, b = await make_pair("0.5")
    response, _seen, stream_id, record = await start_chat(
        http, a.url, upstream, Script(tokens=[f"w{i} " for i in range(25)], delay=0.1), 1
    )
    async with http.get(f"{b.url}/api/chat/streams/{stream_id}") as follower:
        reader = FrameReader(follower)
        first = await reader.next_event()
        assert first is not None
        response.close()  # A has no follower left; B still has one
        await asyncio.sleep(1.2)
        assert not record.closed.is_set(), "A gave up although B was following"
        got = [first.event, *events(await reader.all())]
    assert_contiguous(got)
    assert got[-1]["type"] == "end"
    assert text(got) == "".join(f"w{i} " for i in range(25))


async def test_generation_stops_when_the_last_follower_anywhere_leaves(
    http: aiohttp.ClientSession, make_pair: Callable[[str], Awaitable[Pair]], upstream: FakeUpstream
) -> None:
    a, b = await make_pair("0.5")
    response, _seen, stream_id, record = await start_chat(
        http, a.url, upstream, Script(tokens=[f"w{i} " for i in range(100)], delay=0.1), 1
    )
    follower = await http.get(f"{b.url}/api/chat/streams/{stream_id}")
    assert await FrameReader(follower).next_event() is not None
    response.close()
    await asyncio.sleep(0.8)
    assert not record.closed.is_set()
    follower.close()  # the last follower, on B: A hears of it and interrupts after the grace
    await asyncio.wait_for(record.closed.wait(), timeout=2.5)
    got = await resume(http, b.url, stream_id, after=-1)
    assert_contiguous(got)
    assert got[-1]["code"] == "interrupted"
