"""An OpenAI-compatible answer's life: disconnects, pings, cancel, as on the native API."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import pytest

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script, closed_within
from .servers import ServerProcess
from .sseclient import FrameReader
from .test_openai_api import HELLO, MODEL, client_for

SLOW = Script(tokens=[f"w{i} " for i in range(40)], delay=0.1)


async def test_disconnect_mid_stream_closes_the_upstream_within_a_second(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(SLOW)
    log_before = len(server.log())
    async with client_for(server) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        contents = 0
        async for chunk in stream:
            contents += bool(chunk.choices[0].delta.content)
            if contents == 2:
                break
        record = upstream.records[-1]
        dropped = time.monotonic()
        await stream.close()
        await closed_within(record, since=dropped)
    assert len(record.token_times) < 10
    await asyncio.sleep(0.2)
    assert "Traceback" not in server.log()[log_before:], "a client leaving is not an error"


async def test_a_v1_stream_is_not_kept_for_a_resume_whatever_the_detach_grace(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    patient = await start_server(detach_grace_seconds="30")
    upstream.reset(SLOW)
    async with client_for(patient) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        record = upstream.records[-1]
        dropped = time.monotonic()
        await stream.close()
        await closed_within(record, since=dropped)
    assert len(record.token_times) < 10


async def test_client_giving_up_on_a_non_streamed_answer_closes_the_upstream(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(SLOW)
    async with client_for(server, timeout=0.6) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model=MODEL, messages=HELLO)
    gave_up = time.monotonic()
    record = upstream.records[-1]
    await closed_within(record, since=gave_up)
    assert len(record.token_times) < len(SLOW.tokens)


async def test_pings_cover_a_slow_first_token_and_the_official_client_ignores_them(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=["late"], first_delay=2.5))
    body = {"model": MODEL, "messages": HELLO, "stream": True}
    started = time.monotonic()
    async with http.post(server.url + "/v1/chat/completions", json=body) as response:
        reader = FrameReader(response)
        first = await reader.next()
        assert first is not None
        assert first.event["choices"][0]["delta"]["role"] == "assistant"
        assert first.at - started < 1.0, "the role chunk waits for no token"
        frames = await reader.all()
    assert sum(f.is_ping for f in frames) >= 2

    upstream.reset(Script(tokens=["late"], first_delay=2.5))
    async with client_for(server) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "late"


async def test_native_cancel_stops_an_openai_stream(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(SLOW)
    async with client_for(server) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        chunks = [await stream.__anext__(), await stream.__anext__()]
        stream_id = chunks[0].id.removeprefix("chatcmpl-")
        cancel_url = f"{server.url}/api/chat/streams/{stream_id}/cancel"
        async with http.post(cancel_url) as cancelled:
            assert (await cancelled.json())["data"]["cancelled"] is True
        chunks += [chunk async for chunk in stream]
    # `cancelled` is not one of OpenAI's finish reasons: its clients see the answer stop.
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(chunks) < 20
    await asyncio.wait_for(upstream.records[-1].closed.wait(), timeout=1.0)
