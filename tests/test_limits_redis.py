"""The limits' counters on Redis (access/redis_windows.py): bounded, never open because a
pool is full, failing open or closed as the operator chose, settles retried."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import aiohttp
import pytest

from streamchat.access.limits import FREE, Limiter, Quota
from streamchat.access.redis_windows import RedisWindows
from streamchat.access.ticket import Api, Ticket
from streamchat.access.windows import OK, STREAMS
from streamchat.errors import Failure, Kind

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .redisserver import SHARED_URL
from .servers import free_port
from .sseclient import FrameReader, events
from .tcpproxy import TcpProxy


@pytest.mark.timeout(120)
async def test_300_concurrent_chats_on_a_5_stream_limit_admit_exactly_5(
    start_server: StartServer, upstream: FakeUpstream, redis_prefix: str
) -> None:
    # redis-py's default pool failed past its size instead of waiting, and the limiter took
    # that for Redis being down: 200 of 300 went through uncounted.
    server = await start_server(
        redis_url=SHARED_URL,
        redis_key_prefix=f"{redis_prefix}burst:",
        limit_streams="5",
        max_connections_per_address="1000",  # 300 clients from one address
    )
    upstream.reset(Script(tokens=[f"t{i} " for i in range(20)], delay=0.1))

    async def chat(http: aiohttp.ClientSession) -> int:
        async with http.post(server.url + "/api/chat", json={"uid": 3, "message": "hi"}) as r:
            if r.status == 200:
                assert events(await FrameReader(r).all())[-1]["type"] == "end"
            else:
                await r.read()
            return r.status

    connector = aiohttp.TCPConnector(limit=0)  # 300 connections at once
    async with aiohttp.ClientSession(connector=connector) as http:
        statuses = Counter(await asyncio.gather(*(chat(http) for _ in range(300))))
    assert statuses[200] == 5, statuses
    assert set(statuses) <= {200, 429, 503}, statuses  # refused, as over the limit or busy


async def test_limits_out_of_reach_fail_closed_when_the_operator_says_so() -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    ticket = Ticket("POST", "/api/chat", Api.NATIVE)
    refusing = Limiter(Quota(streams=5), redis_url=closed, fail_closed=True)
    letting = Limiter(Quota(streams=5), redis_url=closed)
    try:
        with pytest.raises(Failure) as refused:
            await refusing.admit(ticket, 1)
        assert refused.value.kind is Kind.BUSY  # a 503, code 63
        assert await letting.admit(ticket, 1) is FREE  # the default: open, as before
    finally:
        await refusing.close()
        await letting.close()


async def test_a_settle_that_fails_is_tried_again_and_frees_the_place(redis_prefix: str) -> None:
    # A failed settle left its open-stream place counted for the whole lease (15 minutes):
    # a key with nothing open was refused.
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.restore()
    windows = RedisWindows(f"redis://127.0.0.1:{proxy.port}/0", redis_prefix, timeout=0.5)
    subject = f"key:{uuid.uuid4().hex}"
    try:
        assert (await windows.admit(subject, "a", 0, 0, 1, 0)).refused == OK
        assert (await windows.admit(subject, "b", 0, 0, 1, 0)).refused == STREAMS
        await proxy.cut()
        settling = asyncio.create_task(windows.settle(subject, "a", 0, 0, 0))
        await asyncio.sleep(1.5)  # a few tries fail meanwhile
        assert not settling.done()
        await proxy.restore()
        await asyncio.wait_for(settling, 10)
        assert (await windows.admit(subject, "c", 0, 0, 1, 0)).refused == OK
    finally:
        await windows.aclose()
        await proxy.cut()
