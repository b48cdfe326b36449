"""Shared fixtures: the fake upstream, real servers, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio

from .dbs import database as database
from .dbs import databases as databases
from .dbs import db_kind as db_kind
from .dbs import scratch as scratch
from .dbs import sqlite_settings
from .fakeupstream import FakeUpstream
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
async def start_server(upstream: FakeUpstream, scratch: str) -> AsyncIterator[StartServer]:
    """Start (or reuse) a server with these STREAMCHAT_ settings; stopped at session end.

    Unless `database_url` is given, each server gets a SQLite file of its own.
    """
    servers: dict[frozenset[tuple[str, str]], ServerProcess] = {}

    async def start(**settings: str) -> ServerProcess:
        env = {"STREAMCHAT_PROVIDER": "openai", "STREAMCHAT_OPENAI_BASE_URL": upstream.base_url}
        env.update({f"STREAMCHAT_{k.upper()}": str(v) for k, v in settings.items()})
        key = frozenset(env.items())
        if key not in servers:
            if "database_url" not in settings:
                env["STREAMCHAT_DATABASE_URL"] = sqlite_settings(scratch)["database_url"]
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
