"""streamchat behind a real nginx running deploy/nginx.conf: streams pass through as they are
written, pings pass, and a client that leaves nginx leaves the app too."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest_asyncio
from playwright.async_api import Page

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .nginxproc import DEPLOY_CONF, NginxProcess
from .servers import ServerProcess
from .sseclient import FrameReader, events
from .test_stream_lifetime import open_stream
from .webpage import TICK, ChatPage, assert_progressive, run_seed_client

CHAT = {"uid": 3, "message": "through the proxy"}
StartNginx = Callable[[ServerProcess], Awaitable[NginxProcess]]


@pytest_asyncio.fixture
async def start_nginx() -> AsyncIterator[StartNginx]:
    """Start nginx in front of a server; stopped and removed after the test."""
    started: list[NginxProcess] = []

    async def start(server: ServerProcess) -> NginxProcess:
        proxy = NginxProcess(server.port)
        started.append(proxy)
        await proxy.start()
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
        proxy.remove()


@pytest_asyncio.fixture
async def nginx(start_nginx: StartNginx, start_server: StartServer) -> NginxProcess:
    """nginx in front of a server like the default one (grace 0, a ping every second), with
    auth off set explicitly: off by default, it refuses what a proxy forwards (issue 23)."""
    server = await start_server(detach_grace_seconds="0", ping_seconds="1", auth="off")
    return await start_nginx(server)


def stream_location() -> str:
    """The body of deploy/nginx.conf's location for the streams."""
    text = DEPLOY_CONF.read_text("utf-8")
    match = re.search(r"location ~ \^/\(api/chat\|[^{]*\{(?P<body>[^}]*)\}", text)
    assert match is not None
    return re.sub(r"#.*", "", match["body"])


def test_deploy_config_streams_without_buffering_cache_or_gzip() -> None:
    text = re.sub(r"#.*", "", DEPLOY_CONF.read_text("utf-8"))
    body = stream_location()
    for directive in ("proxy_buffering off;", "proxy_cache off;", "gzip off;"):
        assert directive in body, directive
    assert "proxy_http_version 1.1;" in text
    assert 'proxy_set_header Connection "";' in text
    timeout = re.search(r"proxy_read_timeout (\d+)s;", body)
    assert timeout is not None
    assert int(timeout[1]) >= 4 * 15, "well above the default ping interval of 15 s"


async def test_first_event_arrives_long_before_the_last(
    http: aiohttp.ClientSession, nginx: NginxProcess, upstream: FakeUpstream
) -> None:
    tokens = [f"w{i} " for i in range(10)]
    upstream.reset(Script(tokens=tokens, delay=TICK))
    started = asyncio.get_running_loop().time()
    async with http.post(nginx.url + "/api/chat", json=CHAT) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        frames = [f for f in await FrameReader(response).all() if not f.is_ping]
    got = events(frames)
    assert [e["index"] for e in got] == list(range(len(tokens) + 2))
    assert frames[0].at - started < 1.0
    assert frames[-1].at - frames[1].at > (len(tokens) - 2) * TICK
    arrivals = [f.at for f in frames[1:-1]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) > TICK / 2, "each token passed nginx on its own, none held back"


async def test_pings_pass_through_during_a_silent_model(
    http: aiohttp.ClientSession, nginx: NginxProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=["late"], first_delay=2.6))
    started = asyncio.get_running_loop().time()
    async with http.post(nginx.url + "/api/chat", json=CHAT) as response:
        frames = await FrameReader(response).all()
    pings = [f.at - started for f in frames if f.is_ping]
    first_delta = next(
        f.at - started for f in frames if not f.is_ping and f.lines[0].find(b'"delta"') > 0
    )
    assert len(pings) >= 2, pings
    assert pings[0] < 1.8, "the first ping came through when it was sent"
    assert all(p < first_delta for p in pings[:2])


async def test_client_disconnect_at_nginx_closes_the_upstream_within_a_second(
    http: aiohttp.ClientSession, nginx: NginxProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=[f"w{i} " for i in range(40)], delay=0.1))
    response, _ = await open_stream(http, nginx, deltas=3)
    record = upstream.records[-1]
    dropped = asyncio.get_running_loop().time()
    response.close()
    await asyncio.wait_for(record.closed.wait(), timeout=1.0)
    assert record.closed_at is not None
    assert record.closed_at - dropped < 1.0
    assert len(record.token_times) < 15


async def test_client_leaving_while_the_model_is_silent_reaches_the_app_at_once(
    http: aiohttp.ClientSession,
    start_server: StartServer,
    start_nginx: StartNginx,
    upstream: FakeUpstream,
) -> None:
    # Default pings (15 s): nothing is written to the client while the model thinks, so only
    # nginx watching the client connection can tell the app that it left.
    quiet = await start_server(detach_grace_seconds="0", auth="off")
    proxy = await start_nginx(quiet)
    upstream.reset(Script(first_delay=30))
    response, seen = await open_stream(http, proxy, deltas=0)
    assert seen[0]["type"] == "start"
    record = upstream.records[-1]
    response.close()
    await asyncio.wait_for(record.closed.wait(), timeout=1.0)


async def test_streams_are_not_compressed_while_pages_are(
    http: aiohttp.ClientSession, nginx: NginxProcess, upstream: FakeUpstream
) -> None:
    gzip = {"Accept-Encoding": "gzip"}
    async with http.post(nginx.url + "/api/chat", json=CHAT, headers=gzip) as response:
        assert "Content-Encoding" not in response.headers
        assert events(await FrameReader(response).all())[-1]["type"] == "end"
    # The same nginx does compress the page: the stream location is what turns gzip off.
    async with http.get(nginx.url + "/", headers=gzip) as response:
        assert response.headers.get("Content-Encoding") == "gzip"
        assert "<title>streamchat</title>" in await response.text()


async def test_errors_and_resume_pass_through(
    http: aiohttp.ClientSession, nginx: NginxProcess, upstream: FakeUpstream
) -> None:
    headers = {"Accept-Language": "en"}
    async with http.post(nginx.url + "/api/chat", json={"uid": 1}, headers=headers) as response:
        assert response.status == 400
        assert await response.json() == {"code": 51, "message": "message is required", "data": None}
    async with http.post(nginx.url + "/api/chat", json=CHAT) as response:
        full = events(await FrameReader(response).all())
    url = f"{nginx.url}/api/chat/streams/{full[0]['stream_id']}"
    async with http.get(url, params={"after": "2"}) as response:
        assert events(await FrameReader(response).all()) == full[3:]


async def test_the_page_and_the_seeds_client_stream_through_nginx(
    page: Page, nginx: NginxProcess, upstream: FakeUpstream
) -> None:
    tokens = [f"word{i} " for i in range(10)]
    upstream.reset(Script(tokens=tokens, delay=TICK))
    chat = ChatPage(page, nginx.url)
    await chat.open()
    await chat.send("hello via nginx")
    samples = await chat.sample_growth()
    final = samples[-1][1]
    assert len({n for _, n in samples if 0 < n < final}) >= 3, samples
    assert await chat.answer_text() == "".join(tokens).strip()

    upstream.reset(Script(tokens=tokens, delay=TICK))
    assert_progressive(await run_seed_client(page, tokens), len(tokens))


async def test_the_page_resumes_by_itself_when_nginx_restarts_mid_answer(
    page: Page, start_server: StartServer, start_nginx: StartNginx, upstream: FakeUpstream
) -> None:
    patient = await start_server(detach_grace_seconds="10", ping_seconds="1", auth="off")
    proxy = await start_nginx(patient)
    tokens = [f"t{i:02d} " for i in range(20)]
    upstream.reset(Script(tokens=tokens, delay=TICK))
    chat = ChatPage(page, proxy.url)
    await chat.open()
    await chat.send("keep going")
    await chat.wait_for_text(len("t00 t01 t02 t03"))
    proxy.stop()  # every connection through it drops
    await proxy.start()
    assert await chat.wait_settled() == "complete"
    assert await chat.answer_text() == "".join(tokens).strip()
    assert await page.is_hidden("#error")
    assert len(upstream.records) == 1


async def test_the_page_gives_up_clearly_when_the_proxy_stays_down(
    page: Page, start_server: StartServer, start_nginx: StartNginx, upstream: FakeUpstream
) -> None:
    patient = await start_server(detach_grace_seconds="10", ping_seconds="1", auth="off")
    proxy = await start_nginx(patient)
    upstream.reset(Script(tokens=[f"t{i:02d} " for i in range(30)], delay=TICK))
    chat = ChatPage(page, proxy.url)
    await chat.open()
    await chat.send("keep going")
    await chat.wait_for_text(len("t00 t01"))
    shown = await chat.answer_text()
    proxy.stop()
    assert "Cannot reach the server" in await chat.error()
    assert await chat.wait_settled() == "error"
    assert (await chat.answer_text()).startswith(shown), "what was shown stays"
    assert await page.is_enabled("#send")
