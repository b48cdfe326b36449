"""A refused request writes nothing, and no request stops what other requests rely on."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest
import uvicorn

from streamchat.config import Settings
from streamchat.server.app import create_app

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess, free_port
from .sseclient import FrameReader
from .test_hub import eventually

CHAT = {"uid": 5, "message": "hi"}


def rows(server: ServerProcess) -> tuple[int, int]:
    """Conversations and messages in the server's SQLite file."""
    path = server.env["STREAMCHAT_DATABASE_URL"].split(":///", 1)[1]
    with sqlite3.connect(path) as db:
        conversations = db.execute("SELECT count(*) FROM conversations").fetchone()[0]
        messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    return conversations, messages


async def test_busy_refusals_write_nothing(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    server = await start_server(max_streams="1", detach_grace_seconds="30")
    upstream.reset(Script(tokens=["a", "b"], hang_after=1))
    before = rows(server)
    async with http.post(server.url + "/api/chat", json=CHAT) as holding:
        assert holding.status == 200
        reader = FrameReader(holding)
        assert (await reader.next()) is not None  # the start event: the slot is taken
        assert rows(server) == (before[0] + 1, before[1] + 2)
        taken = rows(server)
        async with http.post(server.url + "/api/chat", json=CHAT) as refused:
            assert refused.status == 503
            assert (await refused.json())["code"] == 63
        body = {"messages": [{"role": "user", "content": "hi"}]}
        async with http.post(server.url + "/v1/chat/completions", json=body) as refused:
            assert refused.status == 503
        assert rows(server) == taken, "a 503 wrote a conversation or a message"


@pytest.mark.parametrize(
    ("status", "ours"), [(429, 429), (503, 502), (401, 502), (403, 502), (500, 502), (400, 400)]
)
async def test_upstream_refusals_write_nothing(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    upstream: FakeUpstream,
    status: int,
    ours: int,
) -> None:
    upstream.reset(Script(status=status))
    before = rows(server)
    async with http.post(server.url + "/api/chat", json=CHAT) as response:
        assert response.status == ours
    assert rows(server) == before


async def test_bound_refusals_write_nothing(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    before = rows(server)
    big = io.BytesIO(json.dumps({"uid": 5, "message": "x" * (2 * 1024 * 1024)}).encode())
    headers = {"Content-Type": "application/json"}
    async with http.post(server.url + "/api/chat", data=big, headers=headers) as response:
        assert response.status == 413
    async with http.post(server.url + "/api/chat", json={"uid": 2**63, "message": "x"}) as r:
        assert r.status == 400
    assert rows(server) == before


async def test_readyz_is_503_while_the_store_writer_is_down(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # A real server, but in this process, to reach the writer task: nothing a request sends
    # can stop it any more (test_store_writes.py), so the test stops it itself, as a bug would.
    settings = Settings(
        provider="echo",
        echo_delay_ms=0,
        detach_grace_seconds=0,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/ready.db",
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    try:
        await eventually(lambda: server.started, seconds=30)
        async with http.get(url + "/readyz") as response:
            assert response.status == 200
        assert await chat_ends(http, url)
        writer = app.state.history.store._writes._task  # the fault injected: a dead task
        assert writer is not None
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        async with http.get(url + "/readyz") as response:
            assert response.status == 503
            assert (await response.json())["data"]["checks"]["stopped"] == ["store-writer"]
        # The next write brings the writer back, and the chat is served.
        assert await chat_ends(http, url)
        async with http.get(url + "/readyz") as response:
            assert response.status == 200
    finally:
        server.should_exit = True
        await serving


async def chat_ends(http: aiohttp.ClientSession, url: str) -> bool:
    """Whether a chat on `url` is answered to its end event."""
    async with http.post(url + "/api/chat", json=CHAT) as response:
        assert response.status == 200
        frames = await FrameReader(response).all()
    return bool(frames) and frames[-1].event["type"] == "end"
