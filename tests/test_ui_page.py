"""The example page (examples/ui: React, `useChat` from `@ai-sdk/react`, built by esbuild)
in Chromium against a real server: ask, reload mid-answer, and the answer goes on to its end;
a stop keeps the partial text across a reload."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Page

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .nodes import node_env, start_nodes
from .redisserver import SHARED_URL
from .servers import ServerProcess, free_port
from .test_cluster_nginx import MAIN, Nginx

EXAMPLE = Path(__file__).parent.parent / "examples" / "ui"
# Eight seconds: a loaded machine's reload must still come mid-answer.
SLOW = Script(tokens=[f"w{i} " for i in range(80)], delay=0.1)
WHOLE = "".join(SLOW.tokens).strip()
ANSWER = "#messages li[data-role=assistant] .text"


@pytest_asyncio.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The example built into a directory of its own and served on a port of its own."""
    esbuild = EXAMPLE / "node_modules" / ".bin" / "esbuild"
    assert esbuild.exists(), "run `make install-js` (npm ci in examples/ui)"
    out = tmp_path_factory.mktemp("site")
    shutil.copy(EXAMPLE / "www" / "index.html", out / "index.html")
    build = await asyncio.create_subprocess_exec(
        str(esbuild),
        "app.jsx",
        "--bundle",
        "--jsx=automatic",
        "--format=esm",
        f"--outfile={out / 'app.js'}",
        cwd=EXAMPLE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(build.communicate(), timeout=120)
    assert build.returncode == 0, errors.decode()

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(out / "index.html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/", out)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest_asyncio.fixture
async def served(site: str, start_server: StartServer) -> ServerProcess:
    """A server the page's origin may call (auth off on loopback: the uid is in the URL)."""
    return await start_server(cors_origins=site, detach_grace_seconds="0", ping_seconds="1")


async def open_chat(page: Page, site: str, server: ServerProcess, chat_id: str) -> None:
    await page.goto(f"{site}/?api={server.url}&uid=7&chat={chat_id}")
    await page.wait_for_selector("#input")


async def test_a_reload_mid_answer_resumes_it_to_its_end(
    page: Page, site: str, served: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(SLOW)
    chat_id = f"page-{uuid.uuid4().hex[:12]}"
    await open_chat(page, site, served, chat_id)
    await page.fill("#input", "tell me a story")
    await page.press("#input", "Enter")
    await page.wait_for_function(f"document.querySelector({ANSWER!r})?.textContent.includes('w5')")
    await page.reload()  # the POST is closed with the page
    await page.wait_for_selector("#input")
    await page.wait_for_function(
        f"document.querySelector({ANSWER!r})?.textContent.trim() === {WHOLE!r}", timeout=20_000
    )
    await page.wait_for_selector("#status:has-text('ready')")
    roles = await page.locator("#messages li").evaluate_all("els => els.map(e => e.dataset.role)")
    assert roles == ["user", "assistant"]
    assert len(upstream.records) == 1, "the reload resumed the answer, it did not ask again"
    assert len(upstream.records[0].token_times) == len(SLOW.tokens)
    await served.logged(f'"GET /api/ui/chat/{chat_id}/stream" 200')


async def test_stop_keeps_the_partial_answer_across_a_reload(
    page: Page, site: str, served: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(SLOW)
    chat_id = f"page-{uuid.uuid4().hex[:12]}"
    await open_chat(page, site, served, chat_id)
    await page.fill("#input", "tell me a story")
    await page.press("#input", "Enter")
    await page.wait_for_function(f"document.querySelector({ANSWER!r})?.textContent.includes('w3')")
    await page.click("#stop")
    await page.wait_for_selector("#status:has-text('ready')")
    await upstream.records[0].closed.wait()
    shown = (await page.locator(ANSWER).text_content() or "").strip()
    assert shown
    assert WHOLE.startswith(shown)
    assert shown != WHOLE
    await page.reload()
    await page.wait_for_selector(ANSWER)
    kept = (await page.locator(ANSWER).text_content() or "").strip()
    assert WHOLE.startswith(kept)
    assert len(kept) >= len(shown), "the server kept at least what the page showed"
    assert kept != WHOLE


@pytest_asyncio.fixture
async def behind_nginx(
    site: str, upstream: FakeUpstream, redis_prefix: str
) -> AsyncIterator[tuple[Nginx, list[ServerProcess]]]:
    """Two nodes on one Redis behind nginx (deploy/nginx-cluster.conf, round robin), whose
    access log names each request's path and node."""
    # Auth off said explicitly: left to its default, it refuses what comes through a proxy.
    env = node_env(
        upstream,
        SHARED_URL,
        f"{redis_prefix}uipage:",
        detach_grace_seconds="0",
        cors_origins=site,
        auth="off",
    )
    nodes = await start_nodes(2, env)
    proxy = Nginx(nodes)
    (proxy.dir / "nginx.conf").write_text(
        MAIN.replace(
            "'$http_x_test_chat $request_method $upstream_addr $status'",
            "'$request_method $uri $upstream_addr $status'",
        ).format(dir=proxy.dir)
    )
    try:
        await proxy.start()
        yield proxy, nodes
    finally:
        proxy.stop()
        for node in nodes:
            node.stop()


async def test_a_reload_through_nginx_resumes_the_answer_from_the_other_node(
    page: Page,
    site: str,
    behind_nginx: tuple[Nginx, list[ServerProcess]],
    upstream: FakeUpstream,
    http: aiohttp.ClientSession,
) -> None:
    proxy, _ = behind_nginx
    upstream.reset(SLOW)
    chat_id = f"page-{uuid.uuid4().hex[:12]}"
    await page.goto(f"{site}/?api={proxy.url}&uid=7&chat={chat_id}")
    await page.wait_for_selector("#input")
    await page.fill("#input", "tell me a story")
    await page.press("#input", "Enter")
    await page.wait_for_function(f"document.querySelector({ANSWER!r})?.textContent.includes('w5')")
    # Round robin: the reload's two requests (the messages, the resume) go to the node after
    # this one's, then to this one's — the other node than the POST's.
    async with http.get(proxy.url + "/healthz") as probe:
        assert probe.status == 200
    await page.reload()
    await page.wait_for_function(
        f"document.querySelector({ANSWER!r})?.textContent.trim() === {WHOLE!r}", timeout=20_000
    )
    assert len(upstream.records) == 1
    log = [line.split() for line in (proxy.dir / "access.log").read_text().splitlines()]
    posted = [node for method, uri, node, _ in log if method == "POST" and uri == "/api/ui/chat"]
    stream = f"/api/ui/chat/{chat_id}/stream"
    resumed = [node for method, uri, node, status in log if uri == stream and status == "200"]
    assert len(posted) == 1
    assert len(resumed) == 1
    assert resumed != posted, "the resume was served by the node that runs the answer"
