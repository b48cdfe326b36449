"""SIGTERM drains (DESIGN.md §9): a real server, one short and one long stream."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from .fakeupstream import FakeUpstream, Script
from .scrape import scrape, value
from .servers import ServerProcess
from .sseclient import FrameReader, events

CHAT = {"uid": 5, "message": "a story, please"}
GRACE = 4.0


async def open_chat(
    http: aiohttp.ClientSession, url: str, upstream: FakeUpstream, script: Script
) -> tuple[aiohttp.ClientResponse, FrameReader, dict[str, object]]:
    """A chat whose upstream plays `script`, read up to its first delta."""
    upstream.reset(script)
    response = await http.post(url + "/api/chat", json=CHAT)
    assert response.status == 200, await response.text()
    reader = FrameReader(response)
    start = await reader.next_event()
    assert start is not None
    await reader.next_event()
    return response, reader, start.event


async def readyz_status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/readyz") as response:
        return response.status


def stored(database: Path, message_id: object) -> tuple[str, str]:
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT status, content FROM messages WHERE id = ?", (message_id,))
        status, content = row.fetchone()
    return str(status), str(content)


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_lets_short_streams_end_and_interrupts_long_ones(
    http: aiohttp.ClientSession, upstream: FakeUpstream, tmp_path: Path, workers: int
) -> None:
    database = tmp_path / "chat.db"
    server = ServerProcess(
        {
            "STREAMCHAT_PROVIDER": "openai",
            "STREAMCHAT_OPENAI_BASE_URL": upstream.base_url,
            "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "STREAMCHAT_SHUTDOWN_GRACE_SECONDS": str(GRACE),
            "STREAMCHAT_PING_SECONDS": "1",
        },
        args=("--workers", str(workers)),
    )
    await server.start()
    try:
        short = await open_chat(http, server.url, upstream, Script(tokens=["a"] * 8, delay=0.2))
        long = await open_chat(http, server.url, upstream, Script(tokens=["b"] * 600, delay=0.1))
        assert await readyz_status(http, server.url) == 200
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        deadline = signalled + 5
        while await readyz_status(http, server.url) != 503:
            assert time.monotonic() < deadline, "readyz still ready after SIGTERM"
            await asyncio.sleep(0.05)
        async with http.post(server.url + "/api/chat", json=CHAT) as refused:
            assert refused.status == 503
            assert (await refused.json())["code"] == 63
        errors = value(await scrape(http, server.url), "streamchat:request_errors_total")
        assert errors == 1  # that refusal, once, whichever worker answers

        short_rest = events(await short[1].all())
        assert short_rest[-1]["type"] == "end"
        assert short_rest[-1]["finish_reason"] == "stop"
        long_rest = events(await long[1].all())
        ended = time.monotonic() - signalled
        assert long_rest[-1]["type"] == "error", long_rest[-1]
        assert long_rest[-1]["code"] == "interrupted"
        assert ended >= GRACE - 0.5, "the long stream did not get its grace"

        assert await asyncio.to_thread(server.proc.wait, 20) == 0, server.log()
        assert stored(database, short[2]["message_id"]) == ("complete", "a" * 8)
        status, content = stored(database, long[2]["message_id"])
        assert status == "interrupted"
        assert content.startswith("bbb")
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()


async def test_sigterm_with_nothing_running_exits_0_at_once(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    server = ServerProcess(
        {
            "STREAMCHAT_PROVIDER": "openai",
            "STREAMCHAT_OPENAI_BASE_URL": upstream.base_url,
            "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
        }
    )
    await server.start()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    try:
        assert await asyncio.to_thread(server.proc.wait, 15) == 0, server.log()
    except subprocess.TimeoutExpired:
        server.proc.kill()
        raise


async def test_sigterm_while_a_chat_is_starting_drains_it_too(
    http: aiohttp.ClientSession, upstream: FakeUpstream, tmp_path: Path
) -> None:
    # A chat still waiting for its upstream's headers had no generation when the drain
    # looked: nothing interrupted it, and its client was cut off without a final event.
    database = tmp_path / "chat.db"
    server = ServerProcess(
        {
            "STREAMCHAT_PROVIDER": "openai",
            "STREAMCHAT_OPENAI_BASE_URL": upstream.base_url,
            "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "STREAMCHAT_SHUTDOWN_GRACE_SECONDS": "3",
            "STREAMCHAT_PING_SECONDS": "1",
        }
    )
    await server.start()
    try:
        upstream.reset(Script(headers_delay=1.5, tokens=["b"] * 600, delay=0.1))
        starting = asyncio.create_task(http.post(server.url + "/api/chat", json=CHAT))
        await upstream.next_record()  # the chat is inside start(), waiting for the upstream
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        response = await starting
        assert response.status == 200
        got = events(await FrameReader(response).all())
        assert got[-1]["type"] == "error", got[-1]
        assert got[-1]["code"] == "interrupted"
        assert await asyncio.to_thread(server.proc.wait, 20) == 0, server.log()
        assert stored(database, got[0]["message_id"])[0] == "interrupted"
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
