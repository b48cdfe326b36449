"""The event-stream response (streaming.py) against a real server: how a response ends."""

from __future__ import annotations

import asyncio

import aiohttp

from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess


async def test_client_disconnect_mid_stream_logs_no_error(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    # Regression: the response read the outcome of its pump before the cancellation had
    # run, so every client that left mid-stream made uvicorn log an InvalidStateError.
    upstream.reset(Script(tokens=[f"w{i} " for i in range(40)], delay=0.1))
    logged_before = len(server.log())
    response = await http.post(server.url + "/api/chat", json={"uid": 5, "message": "hi"})
    assert response.status == 200
    await response.content.readany()
    record = await upstream.next_record()
    response.close()
    await asyncio.wait_for(record.closed.wait(), timeout=2)
    await asyncio.sleep(0.2)  # the response's own exit comes right after
    log = server.log()[logged_before:]
    assert "no follower left" in log
    assert "Exception in ASGI application" not in log
    assert "Traceback" not in log
