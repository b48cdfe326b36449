"""Redis going away under two nodes: restarted, or gone for longer than the outage budget.

Each test has a Redis server of its own (never the machine's shared one) to kill.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from .fakeupstream import FakeUpstream, Script
from .nodes import CHAT, assert_contiguous, node_env, resume, start_chat, start_nodes, text
from .redisserver import RedisServer
from .servers import ServerProcess
from .sseclient import FrameReader, events
from .tcpproxy import TcpProxy

TOKENS = [f"w{i} " for i in range(40)]


Pair = tuple[ServerProcess, ServerProcess]


@pytest_asyncio.fixture
async def make_pair(
    own_redis: RedisServer, upstream: FakeUpstream
) -> AsyncIterator[Callable[[str], Awaitable[Pair]]]:
    """Two nodes on the test's own Redis, with this outage budget."""
    started: list[ServerProcess] = []

    async def make(outage: str) -> Pair:
        env = node_env(
            upstream,
            own_redis.url,
            "outage:",
            detach_grace_seconds="5",
            redis_outage_seconds=outage,
        )
        a, b = await start_nodes(2, env)
        started.extend((a, b))
        return a, b

    yield make
    for node in started:
        node.stop()


async def read_rest(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    return events(await FrameReader(response).all())


async def stored_answer(
    http: aiohttp.ClientSession, url: str, start: dict[str, Any]
) -> dict[str, Any]:
    """The assistant message of the chat that began with `start`, as the database has it."""
    path = f"{url}/api/conversations/{start['conversation_id']}/messages"
    async with http.get(path, params={"uid": str(start["uid"])}) as response:
        assert response.status == 200
        items = (await response.json())["data"]["items"]
    answer: dict[str, Any] = next(m for m in items if m["id"] == start["message_id"])
    return answer


async def test_redis_restarted_mid_stream_the_stream_continues_on_both_nodes(
    http: aiohttp.ClientSession,
    make_pair: Callable[[str], Awaitable[Pair]],
    own_redis: RedisServer,
    upstream: FakeUpstream,
) -> None:
    a, b = await make_pair("5")
    response, seen, stream_id, _record = await start_chat(
        http, a.url, upstream, Script(tokens=TOKENS, delay=0.05), 5
    )
    follower = await http.get(f"{b.url}/api/chat/streams/{stream_id}", params={"after": "4"})
    assert follower.status == 200
    await own_redis.restart(down_for=0.3)  # everything Redis held is gone
    async with asyncio.timeout(15):  # nothing hangs
        on_a, on_b = await asyncio.gather(read_rest(response), read_rest(follower))
    for got in (seen + on_a, seen + on_b):
        assert_contiguous(got)
        assert got[-1]["type"] == "end"
        assert text(got) == "".join(TOKENS)
    response.close()
    follower.close()
    # A wrote the whole stream again from its own copy: a late resume on B replays it all.
    assert await resume(http, b.url, stream_id, after=-1) == seen + on_a
    # And the answer is in the database, whole.
    answer = await stored_answer(http, b.url, seen[0])
    assert answer["status"] == "complete"
    assert answer["content"] == "".join(TOKENS)


async def test_redis_gone_longer_than_the_budget_ends_streams_and_refuses_new_ones(
    http: aiohttp.ClientSession,
    make_pair: Callable[[str], Awaitable[Pair]],
    own_redis: RedisServer,
    upstream: FakeUpstream,
) -> None:
    a, b = await make_pair("1")
    response, seen, stream_id, record = await start_chat(
        http, a.url, upstream, Script(tokens=[f"w{i} " for i in range(200)], delay=0.05), 3
    )
    follower = await http.get(f"{b.url}/api/chat/streams/{stream_id}", params={"after": "2"})
    assert follower.status == 200
    own_redis.kill()
    gone = time.monotonic()
    async with asyncio.timeout(10):
        on_a = await read_rest(response)
        # On A, the writing node, the stream ends with an error event (budget: 1 s) ...
        got = seen + on_a
        assert_contiguous(got)
        assert got[-1]["type"] == "error"
        assert got[-1]["code"] == "stream_unavailable"
        assert time.monotonic() - gone >= 1
        await asyncio.wait_for(record.closed.wait(), 1)  # ... and the generation stopped.
        # On B, which cannot reach the events any more, the connection is closed: no hang.
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_rest(follower)
        follower.close()
    # The answer is still in the database, with what was generated before the end.
    answer = await stored_answer(http, b.url, seen[0])
    assert answer["status"] == "error"
    assert answer["content"] == text(got)
    assert answer["content"]
    # Meanwhile requests that need Redis are refused, after the budget, with a 503.
    async with asyncio.timeout(10):
        async with http.post(a.url + "/api/chat", json=CHAT) as refused:
            assert refused.status == 503
            assert (await refused.json())["code"] == 63
        # The upstream call it had opened is closed.
        await asyncio.wait_for(upstream.records[-1].closed.wait(), 1)
        async with http.post(f"{b.url}/api/chat/streams/{stream_id}/cancel") as refused:
            assert refused.status == 503
        async with http.get(f"{b.url}/api/chat/streams/{stream_id}") as refused:
            assert refused.status == 503
    # Redis back (empty): the nodes serve again without a restart.
    await own_redis.start()
    upstream.reset(Script(tokens=["ok"]))
    async with asyncio.timeout(10):
        while True:
            async with http.post(a.url + "/api/chat", json=CHAT) as again:
                if again.status == 200:
                    assert text(events(await FrameReader(again).all())) == "ok"
                    break
            await asyncio.sleep(0.2)


async def test_a_node_started_while_redis_is_down_serves_once_it_is_up(
    http: aiohttp.ClientSession,
    make_pair: Callable[[str], Awaitable[Pair]],
    own_redis: RedisServer,
    upstream: FakeUpstream,
) -> None:
    own_redis.kill()
    a, _ = await make_pair("1")  # starts, and is healthy: streams need Redis, /healthz not
    upstream.reset(Script(tokens=["ok"]))
    async with http.post(a.url + "/api/chat", json=CHAT) as refused:
        assert refused.status == 503
    await own_redis.start()
    async with asyncio.timeout(10):
        while True:
            async with http.post(a.url + "/api/chat", json=CHAT) as response:
                if response.status == 200:
                    got = events(await FrameReader(response).all())
                    break
            await asyncio.sleep(0.2)
    assert_contiguous(got)
    assert text(got) == "ok"


async def test_followers_elsewhere_uncounted_for_a_moment_do_not_cancel_the_generation(
    http: aiohttp.ClientSession, own_redis: RedisServer, upstream: FakeUpstream
) -> None:
    # The last follower on A leaves; when its grace ends, A cannot reach Redis to count the
    # followers on B. It once counted its own (none) and cancelled B's answer.
    proxy = TcpProxy("127.0.0.1", own_redis.port)
    await proxy.restore()
    env = node_env(upstream, own_redis.url, "detach:", detach_grace_seconds="1")
    b = ServerProcess(env)
    a = ServerProcess(env | {"STREAMCHAT_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"})
    await asyncio.gather(a.start(), b.start())
    try:
        response, seen, stream_id, _record = await start_chat(
            http, a.url, upstream, Script(tokens=TOKENS, delay=0.1), 3
        )
        follower = await http.get(f"{b.url}/api/chat/streams/{stream_id}", params={"after": "2"})
        assert follower.status == 200
        await asyncio.sleep(0.3)  # B's follower is counted in Redis
        response.close()  # A's last follower: its grace (1 s) begins
        await proxy.cut()
        await asyncio.sleep(2)  # the grace ends while A cannot count B's follower
        await proxy.restore()
        async with asyncio.timeout(15):
            got = seen + await read_rest(follower)
        follower.close()
        assert_contiguous(got)
        assert got[-1]["type"] == "end", got[-1]
        assert text(got) == "".join(TOKENS)
        assert "not counted" in a.log()
    finally:
        a.stop()
        b.stop()
        await proxy.cut()
