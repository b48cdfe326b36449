"""`streamchat serve --workers N`: one service with Redis, a warning without it."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import redis.asyncio as redis

from .fakeupstream import FakeUpstream, Script
from .nodes import assert_contiguous, node_env, read_events, resume, text
from .redisserver import SHARED_URL
from .servers import ServerProcess

WARNING = "warning: 2 workers without STREAMCHAT_REDIS_URL"


async def start_workers(env: dict[str, str]) -> ServerProcess:
    server = ServerProcess(env, args=("--workers", "2"))
    await server.start()
    deadline = time.monotonic() + 30
    while server.log().count("Application startup complete") < 2:
        assert time.monotonic() < deadline, server.log()
        await asyncio.sleep(0.05)
    return server


async def owner(prefix: str, stream_id: str) -> bytes:
    """Which worker (node id) wrote a stream, as recorded in Redis."""
    client = redis.Redis.from_url(SHARED_URL)
    try:
        node = await client.hget(f"{prefix}{{{stream_id}}}:meta", "owner")
    finally:
        await client.aclose()
    assert isinstance(node, bytes)
    return node


async def test_workers_without_redis_print_a_warning(upstream: FakeUpstream) -> None:
    env = node_env(upstream, "", "unused:")
    server = await start_workers(env)
    try:
        assert WARNING in server.log()
        assert "resuming or cancelling a stream works only on the worker" in server.log()
    finally:
        server.stop()


async def test_workers_with_redis_behave_as_one_service(
    upstream: FakeUpstream, redis_prefix: str
) -> None:
    prefix = f"{redis_prefix}workers:"
    env = node_env(upstream, SHARED_URL, prefix, detach_grace_seconds="10")
    server = await start_workers(env)
    try:
        assert WARNING not in server.log()
        assert len(set(re.findall(r"Started server process \[(\d+)\]", server.log()))) == 2
        upstream.reset(Script(tokens=[f"w{i} " for i in range(10)], delay=0.03))
        owners: set[bytes] = set()
        # Each request on a connection of its own, until both workers have started chats
        # (which the kernel spreads between them): each is resumed on a new connection.
        for _ in range(40):
            async with aiohttp.ClientSession() as first:
                response, seen = await read_events(first, server.url, 3)
                response.close()
            async with aiohttp.ClientSession() as second:
                rest = await resume(second, server.url, seen[0]["stream_id"], seen[-1]["index"])
            got = seen + rest
            assert_contiguous(got)
            assert text(got) == "".join(f"w{i} " for i in range(10))
            owners.add(await owner(prefix, seen[0]["stream_id"]))
            if len(owners) == 2:
                break
        assert len(owners) == 2
        assert "Traceback" not in server.log()
    finally:
        server.stop()
