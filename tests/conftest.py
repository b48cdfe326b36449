"""Shared fixtures: the fake upstream, real servers, an HTTP client."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from streamchat.providers.model_files import BUILTIN, ensure_builtin

from .dbs import database as database
from .dbs import databases as databases
from .dbs import db_kind as db_kind
from .dbs import scratch as scratch
from .dbs import sqlite_settings
from .dbs import store as store
from .fakeupstream import FakeUpstream
from .localmodel import SMALL, close_clients, local_settings
from .redisserver import SHARED_URL, RedisServer, delete_prefix, wait_for_redis
from .servers import ServerProcess
from .webpage import CHROMIUM, LAUNCH_ARGS, WATCH_CSP

StartServer = Callable[..., Awaitable[ServerProcess]]


@pytest_asyncio.fixture(scope="session")
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    yield server
    await server.close()


@pytest_asyncio.fixture(autouse=True)
async def _close_local_clients() -> AsyncIterator[None]:
    """The OpenAI clients the embedded model's tests made, closed after each test."""
    yield
    await close_clients()


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

    async def start(startup_seconds: float = 30, **settings: str) -> ServerProcess:
        env = {"STREAMCHAT_PROVIDER": "openai", "STREAMCHAT_OPENAI_BASE_URL": upstream.base_url}
        env.update({f"STREAMCHAT_{k.upper()}": str(v) for k, v in settings.items()})
        key = frozenset(env.items())
        if key not in servers:
            if "database_url" not in settings:
                env["STREAMCHAT_DATABASE_URL"] = sqlite_settings(scratch)["database_url"]
            server = ServerProcess(env, startup_seconds)
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
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright; shared by the session."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser profile (empty localStorage) in Chinese, like the seed's; a desktop width.

    Fails the test if the page threw an uncaught error.
    """
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    await context.add_init_script(WATCH_CSP)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    await context.close()
    assert not errors, errors


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A model cache holding the assembled test model; removed at the end (it is 470 MB)."""
    directory = tmp_path_factory.mktemp("models")
    ensure_builtin(BUILTIN[SMALL], directory, print)
    yield directory
    shutil.rmtree(directory)


@pytest_asyncio.fixture(scope="session")
async def short_answers(start_server: StartServer, model_dir: Path) -> ServerProcess:
    """The small local model, its answers cut at 24 tokens."""
    return await start_server(120, **local_settings(model_dir, local_max_tokens="24"))


@pytest_asyncio.fixture(scope="session")
async def one_waiting(start_server: StartServer, model_dir: Path) -> ServerProcess:
    """The small local model, long answers, and room for one request waiting in its queue."""
    settings = local_settings(model_dir, local_max_tokens="400", local_max_queue="1")
    return await start_server(120, **settings)


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
