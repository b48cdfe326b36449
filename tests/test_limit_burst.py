"""Limits that hold under a burst (issue 23, items 2 and 7): tokens reserved at admission and
settled to the real count, a default cap on one key's open streams, and a cap on followers."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from streamchat.access.redis_windows import RedisWindows
from streamchat.access.windows import OK, TOKENS, LocalWindows, Windows

from .conftest import StartServer
from .dbs import Databases
from .fakeupstream import FakeUpstream, Script
from .keyring import bearer, create_key
from .nodes import node_env, start_nodes
from .redisserver import SHARED_URL
from .servers import ServerProcess
from .sseclient import FrameReader, events, take_events

LIMIT = 100
# The operator's cap on an answer: each request reserves 2 // 4 + 1 + 40 = 41 tokens.
CAP = "40"
# Each answer really costs 2 prompt tokens (one a character, at the fake upstream) and 10.
SPENT = 12


async def _chat(http: aiohttp.ClientSession, url: str) -> int | None:
    """The tokens one chat of uid 61 used, or None when it was refused with a 429."""
    async with http.post(url + "/api/chat", json={"uid": 61, "message": "go"}) as response:
        if response.status == 429:
            assert (await response.json())["code"] == 63
            return None
        assert response.status == 200, await response.text()
        end = events(await FrameReader(response).all())[-1]
        assert end["type"] == "end", end
        return int(end["usage"]["prompt_tokens"]) + int(end["usage"]["completion_tokens"])


async def _burst_then_one_by_one(http: aiohttp.ClientSession, urls: list[str]) -> None:
    burst = await asyncio.gather(*(_chat(http, urls[i % len(urls)]) for i in range(40)))
    admitted = [used for used in burst if used is not None]
    # Two reservations of 41 fit in 100; the old count admitted all forty (480 tokens).
    assert len(admitted) == 2, burst
    spent = sum(admitted)
    assert spent == 2 * SPENT
    # Settled to what they used (12, not 41): three more fit, one at a time, then no more.
    later = 0
    for i in range(10):
        await asyncio.sleep(0.2)  # an answer is settled just after its end, off its path
        used = await _chat(http, urls[i % len(urls)])
        if used is None:
            break
        later += 1
        spent += used
    assert later == 3
    assert spent <= LIMIT


async def test_a_burst_cannot_spend_more_tokens_than_a_minute_allows(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=[f"w{i} " for i in range(10)], delay=0.02))
    server = await start_server(limit_tokens_per_minute=str(LIMIT), local_max_tokens=CAP)
    await _burst_then_one_by_one(http, [server.url])


async def test_a_burst_over_two_nodes_reserves_in_redis(
    http: aiohttp.ClientSession, upstream: FakeUpstream, redis_prefix: str
) -> None:
    upstream.reset(Script(tokens=[f"w{i} " for i in range(10)], delay=0.02))
    env = node_env(
        upstream,
        SHARED_URL,
        f"{redis_prefix}burst:",
        limit_tokens_per_minute=str(LIMIT),
        local_max_tokens=CAP,
    )
    nodes = await start_nodes(2, env)
    try:
        await _burst_then_one_by_one(http, [node.url for node in nodes])
    finally:
        for node in nodes:
            node.stop()


async def _open_streams(
    http: aiohttp.ClientSession, url: str, count: int, headers: dict[str, str] | None = None
) -> tuple[list[aiohttp.ClientResponse], list[int]]:
    responses = await asyncio.gather(
        *(
            http.post(url + "/api/chat", json={"uid": 62, "message": "long"}, headers=headers)
            for _ in range(count)
        )
    )
    return [r for r in responses if r.status == 200], [r.status for r in responses]


@pytest.mark.parametrize("shared", [False, True])
async def test_one_key_takes_eight_streams_by_default_with_no_limit_set(
    http: aiohttp.ClientSession, upstream: FakeUpstream, redis_prefix: str, shared: bool
) -> None:
    upstream.reset(Script(tokens=[f"w{i} " for i in range(100)], delay=0.05))
    redis = {"STREAMCHAT_REDIS_URL": SHARED_URL} if shared else {}
    env = node_env(upstream, SHARED_URL, f"{redis_prefix}cap:")
    env = {k: v for k, v in env.items() if not k.startswith("STREAMCHAT_REDIS_URL")} | redis
    server = ServerProcess(env)
    await server.start()
    try:
        opened, statuses = await _open_streams(http, server.url, 9)
        assert sorted(statuses) == [200] * 8 + [429], statuses
        for response in opened:
            response.close()
    finally:
        server.stop()


async def test_followers_of_a_key_are_capped(
    http: aiohttp.ClientSession,
    start_server: StartServer,
    databases: Databases,
    upstream: FakeUpstream,
) -> None:
    db = await databases.new("sqlite")
    key = await create_key(db, 63, "--streams", "1")
    server = await start_server(auth="keys", limit_followers="3", **db)
    upstream.reset(Script(tokens=[f"w{i} " for i in range(100)], delay=0.05))
    chat = await http.post(server.url + "/api/chat", json={"message": "x"}, headers=bearer(key))
    assert chat.status == 200
    [start] = await take_events(FrameReader(chat), 1)
    follow = f"{server.url}/api/chat/streams/{start['stream_id']}"
    followers = [await http.get(follow, headers=bearer(key)) for _ in range(3)]
    assert [f.status for f in followers] == [200] * 3
    async with http.get(follow, headers=bearer(key)) as fourth:
        assert fourth.status == 429
        assert "3" in (await fourth.json())["message"]
    followers.pop().close()  # one leaves: its place is free again
    for _ in range(50):
        async with http.get(follow, headers=bearer(key)) as again:
            if again.status == 200:
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the place of a follower that left was never freed")
    for follower in followers:
        follower.close()
    chat.close()


@pytest.mark.parametrize("shared", [False, True])
async def test_a_reservation_is_taken_back_from_the_minute_it_was_made_in(
    shared: bool, redis_prefix: str
) -> None:
    windows: Windows = RedisWindows(SHARED_URL, redis_prefix) if shared else LocalWindows()
    try:
        first = await windows.admit("key:9", "a", 0, LIMIT, 0, 60)
        assert (first.refused, first.tokens_left) == (OK, 40)
        refused = await windows.admit("key:9", "b", 0, LIMIT, 0, 60)
        assert (refused.refused, refused.tokens_left) == (TOKENS, 40)
        # A reservation is capped at the limit: alone in its minute, a large one fits.
        await windows.settle("key:9", "a", 7, 60, first.minute)
        after = await windows.admit("key:9", "c", 0, LIMIT, 0, 10_000)
        assert after.refused == TOKENS  # 7 spent: the whole 100 no longer fits
        second = await windows.admit("key:9", "d", 0, LIMIT, 0, 93)
        assert (second.refused, second.tokens_left) == (OK, 0)
        # A reservation whose minute has left the window is not taken back from the
        # current minute's count (which never held it).
        await windows.settle("key:9", "d", 0, 93, second.minute - 5)
        again = await windows.admit("key:9", "e", 0, LIMIT, 0, 1)
        assert again.refused == TOKENS
    finally:
        await windows.aclose()
