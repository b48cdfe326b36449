"""Fair use (DESIGN.md §8): requests, tokens and open streams per key (per uid with auth
off), OpenAI's x-ratelimit headers, 429s that write nothing, and one count over two nodes."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from streamchat.access.limits import FREE, Limiter, Quota
from streamchat.access.redis_windows import RedisWindows
from streamchat.access.ticket import Api, Ticket
from streamchat.access.windows import CountersUnavailable

from .conftest import StartServer
from .dbs import Databases, row_counts
from .fakeupstream import FakeUpstream
from .keyring import bearer, create_key
from .nodes import node_env, start_nodes
from .redisserver import SHARED_URL
from .servers import free_port
from .sseclient import FrameReader, events, take_events

V1 = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}


async def _chat(
    http: aiohttp.ClientSession, url: str, uid: int, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(
        url + "/api/chat", json={"uid": uid, "message": "hello there"}, headers=headers
    ) as response:
        return response.status, dict(response.headers), await response.read()


async def test_requests_per_minute_per_uid_with_headers_then_429(
    http: aiohttp.ClientSession, start_server: StartServer, databases: Databases
) -> None:
    db = await databases.new("sqlite")
    server = await start_server(
        provider="echo", echo_delay_ms="1", limit_requests_per_minute="3", **db
    )
    remaining = []
    for _ in range(3):
        status, headers, _ = await _chat(http, server.url, 21)
        assert status == 200
        assert headers["x-ratelimit-limit-requests"] == "3"
        assert headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    before = await row_counts(db)
    status, headers, body = await _chat(http, server.url, 21)
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert b'"code":63' in body
    assert await row_counts(db) == before  # the refusal wrote nothing
    # Another uid has its own count.
    assert (await _chat(http, server.url, 22))[0] == 200


async def test_v1_refusal_is_openais_rate_limit_shape(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", echo_delay_ms="1", limit_requests_per_minute="1")
    async with http.post(server.url + "/v1/chat/completions", json=V1) as first:
        assert first.status == 200
        assert first.headers["x-ratelimit-remaining-requests"] == "0"
    async with http.post(server.url + "/v1/chat/completions", json=V1) as second:
        assert second.status == 429
        error = (await second.json())["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert "Retry-After" in second.headers


async def test_tokens_per_minute_count_what_the_answers_used(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    # Each request reserves 23 // 4 + 1 + 4 = 10 tokens at admission (the operator's cap on an
    # answer is 4) and costs 10 (echo: 5 words in, 5 out) once settled.
    server = await start_server(
        provider="echo", echo_delay_ms="1", limit_tokens_per_minute="30", local_max_tokens="4"
    )
    used = 0
    for _ in range(10):
        await asyncio.sleep(0.1)  # the last answer is settled just after its end
        async with http.post(
            server.url + "/api/chat", json={"uid": 31, "message": "one two three four five"}
        ) as response:
            if response.status == 429:
                assert "x-ratelimit-remaining-tokens" in response.headers
                break
            assert response.status == 200
            assert int(response.headers["x-ratelimit-limit-tokens"]) == 30
            got = events(await FrameReader(response).all())
            usage = got[-1]["usage"]
            used += usage["prompt_tokens"] + usage["completion_tokens"]
    else:
        raise AssertionError("never refused")
    assert used == 30  # refused once the next reservation no longer fits


async def test_open_streams_per_key_and_the_keys_own_limit(
    http: aiohttp.ClientSession, start_server: StartServer, databases: Databases
) -> None:
    db = await databases.new("sqlite")
    one = await create_key(db, 41, "--streams", "1")
    two = await create_key(db, 42)
    server = await start_server(
        auth="keys", provider="echo", echo_delay_ms="100", limit_streams="2", **db
    )
    long = {"message": " ".join(f"w{i}" for i in range(30))}
    first = await http.post(server.url + "/api/chat", json=long, headers=bearer(one))
    assert first.status == 200
    await take_events(FrameReader(first), 1)
    async with http.post(server.url + "/api/chat", json=long, headers=bearer(one)) as refused:
        assert refused.status == 429
        assert "1" in (await refused.json())["message"]
    # The default (2) for a key without its own.
    opened = []
    for _ in range(2):
        response = await http.post(server.url + "/api/chat", json=long, headers=bearer(two))
        assert response.status == 200
        opened.append(response)
    async with http.post(server.url + "/api/chat", json=long, headers=bearer(two)) as third:
        assert third.status == 429
    # A stream that ends gives its place back.
    await FrameReader(first).all()
    first.close()
    async with http.post(
        server.url + "/api/chat", json={"message": "hi"}, headers=bearer(one)
    ) as again:
        assert again.status == 200
        await again.read()
    for response in opened:
        response.close()


async def test_a_burst_over_two_nodes_is_counted_once(
    http: aiohttp.ClientSession, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = node_env(upstream, SHARED_URL, f"{redis_prefix}limits:", limit_requests_per_minute="4")
    env["STREAMCHAT_PROVIDER"] = "echo"
    env["STREAMCHAT_ECHO_DELAY_MS"] = "1"
    a, b = await start_nodes(2, env)
    try:
        statuses = [(await _chat(http, node.url, 51))[0] for node in (a, b, a, b, a, b)]
        assert statuses == [200, 200, 200, 200, 429, 429]
    finally:
        a.stop()
        b.stop()


async def test_counters_out_of_reach_let_requests_through_uncounted() -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    windows = RedisWindows(closed, "t:", timeout=1, settle_seconds=0)
    try:
        with pytest.raises(CountersUnavailable):
            await windows.admit("key:1", "s", 1, 0, 0, 0)
        with pytest.raises(CountersUnavailable):
            await windows.settle("key:1", "s", 5, 0, 0)
    finally:
        await windows.aclose()
    limiter = Limiter(Quota(requests_per_minute=1), redis_url=closed)
    try:
        for _ in range(3):
            assert await limiter.admit(Ticket("POST", "/api/chat", Api.NATIVE), 1) is FREE
    finally:
        await limiter.close()
