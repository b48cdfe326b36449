"""Shared fixtures: the fake upstream, real servers, an HTTP client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio

from .fakeupstream import FakeUpstream
from .redisserver import SHARED_URL, RedisServer, delete_prefix, wait_for_redis
from .servers import ServerProcess

StartServer = Callable[..., Awaitable[ServerProcess]]


@pytest_asyncio.fixture(scope="session")
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    yield server
    await server.close()


@pytest.fixture(autouse=True)
def _fresh_script(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").reset()


@pytest_asyncio.fixture(scope="session")
async def start_server(upstream: FakeUpstream) -> AsyncIterator[StartServer]:
    """Start (or reuse) a server with these STREAMCHAT_ settings; stopped at session end."""
    servers: dict[frozenset[tuple[str, str]], ServerProcess] = {}

    async def start(**settings: str) -> ServerProcess:
        env = {"STREAMCHAT_PROVIDER": "openai", "STREAMCHAT_OPENAI_BASE_URL": upstream.base_url}
        env.update({f"STREAMCHAT_{k.upper()}": str(v) for k, v in settings.items()})
        key = frozenset(env.items())
        if key not in servers:
            server = ServerProcess(env)
            await server.start()
            servers[key] = server
        return servers[key]

    yield start
    for server in servers.values():
        server.stop()


@pytest_asyncio.fixture(scope="session")
async def server(start_server: StartServer) -> ServerProcess:
    """The default server: openai provider on the fake upstream, grace 0, fast pings."""
    return await start_server(detach_grace_seconds="0", ping_seconds="1")


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


@pytest_asyncio.fixture(scope="session")
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test run's own on the shared Redis; its keys go at the end."""
    await wait_for_redis(SHARED_URL, seconds=5)
    prefix = f"streamchat-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    await delete_prefix(SHARED_URL, prefix)


@pytest_asyncio.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    """A Redis server of the test's own, which it may kill and restart."""
    server = RedisServer()
    await server.start()
    yield server
    server.close()
