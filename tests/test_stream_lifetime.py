"""A stream's life after its response: disconnect and grace, cancel, resume, expiry."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .sseclient import FrameReader, events, take_events

CHAT = {"uid": 7, "message": "tell me a story"}
SLOW = Script(tokens=[f"w{i} " for i in range(40)], delay=0.1)


async def open_stream(
    http: aiohttp.ClientSession, server: ServerProcess, deltas: int
) -> tuple[aiohttp.ClientResponse, list[dict[str, Any]]]:
    """POST a chat and read until `deltas` delta events have arrived."""
    response = await http.post(server.url + "/api/chat", json=CHAT)
    assert response.status == 200
    reader = FrameReader(response)
    got = await take_events(reader, deltas + 1)
    return response, got


async def test_disconnect_with_grace_0_closes_upstream_within_a_second(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(SLOW)
    response, _ = await open_stream(http, server, deltas=2)
    record = upstream.records[-1]
    dropped = asyncio.get_running_loop().time()
    response.close()
    await asyncio.wait_for(record.closed.wait(), timeout=1.0)
    assert record.closed_at is not None
    assert record.closed_at - dropped < 1.0
    assert len(record.token_times) < 10


async def test_upstream_closed_when_client_leaves_during_the_wait_for_first_token(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(first_delay=30))
    response = await http.post(server.url + "/api/chat", json=CHAT)
    frame = await FrameReader(response).next()
    assert frame is not None
    assert frame.event["type"] == "start"
    record = upstream.records[-1]
    response.close()
    await asyncio.wait_for(record.closed.wait(), timeout=1.0)


async def test_generation_survives_a_disconnect_within_grace_and_resumes(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    patient = await start_server(detach_grace_seconds="3", ping_seconds="1")
    upstream.reset(Script(tokens=[f"w{i} " for i in range(12)], delay=0.1))
    response, seen = await open_stream(http, patient, deltas=3)
    response.close()
    record = upstream.records[-1]
    await asyncio.sleep(0.5)
    assert not record.closed.is_set(), "the upstream must stay open during the grace period"
    stream_id, last = seen[0]["stream_id"], seen[-1]["index"]
    async with http.get(f"{patient.url}/api/chat/streams/{stream_id}?after={last}") as resumed:
        rest = events(await FrameReader(resumed).all())
    got = seen + rest
    assert [e["index"] for e in got] == list(range(len(got)))
    assert "".join(e["delta"] for e in got if e["type"] == "delta") == "".join(SLOW.tokens[:12])
    assert got[-1]["type"] == "end"
    assert got[-1]["finish_reason"] == "stop"


async def test_generation_is_interrupted_when_grace_expires(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    brief = await start_server(detach_grace_seconds="0.5", ping_seconds="1")
    upstream.reset(SLOW)
    response, seen = await open_stream(http, brief, deltas=1)
    response.close()
    record = upstream.records[-1]
    await asyncio.wait_for(record.closed.wait(), timeout=2.0)
    stream_id = seen[0]["stream_id"]
    async with http.get(f"{brief.url}/api/chat/streams/{stream_id}") as replay:
        got = events(await FrameReader(replay).all())
    assert got[-1]["type"] == "error"
    assert got[-1]["code"] == "interrupted"
    assert [e["index"] for e in got] == list(range(len(got)))


async def test_cancel_ends_stream_with_cancelled_and_closes_upstream(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(SLOW)
    response = await http.post(server.url + "/api/chat", json=CHAT)
    reader = FrameReader(response)
    start = await reader.next_event()
    assert start is not None
    stream_id = start.event["stream_id"]
    delta = await reader.next_event()
    assert delta is not None
    async with http.post(f"{server.url}/api/chat/streams/{stream_id}/cancel") as cancel:
        assert cancel.status == 200
        body = await cancel.json()
    assert body == {"code": 0, "message": "", "data": {"stream_id": stream_id, "cancelled": True}}
    got = [start.event, delta.event, *events(await reader.all())]
    assert got[-1]["type"] == "end"
    assert got[-1]["finish_reason"] == "cancelled"
    assert [e["index"] for e in got] == list(range(len(got)))
    await asyncio.wait_for(upstream.records[-1].closed.wait(), timeout=1.0)
    response.close()

    async with http.post(f"{server.url}/api/chat/streams/{stream_id}/cancel") as again:
        assert again.status == 200
        assert (await again.json())["data"]["cancelled"] is False


async def test_cancel_unknown_stream_is_404(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.post(f"{server.url}/api/chat/streams/nope/cancel") as response:
        assert response.status == 404
        assert (await response.json())["code"] == 65


async def test_resume_after_n_and_last_event_id_replays_exactly_the_missing_events(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    async with http.post(server.url + "/api/chat", json=CHAT) as response:
        full = events(await FrameReader(response).all())
    stream_id = full[0]["stream_id"]
    url = f"{server.url}/api/chat/streams/{stream_id}"

    async with http.get(url, params={"after": "2"}) as response:
        assert response.status == 200
        frames = await FrameReader(response).all()
    assert events(frames) == full[3:]
    # On this endpoint each event carries its index as `id:`, after the `data:` line.
    assert [f.lines[1] for f in frames] == [b"id: %d" % e["index"] for e in full[3:]]

    async with http.get(url, headers={"Last-Event-ID": "4"}) as response:
        assert events(await FrameReader(response).all()) == full[5:]

    async with http.get(url) as response:
        assert events(await FrameReader(response).all()) == full


async def test_resume_follows_a_live_stream(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=[f"w{i} " for i in range(8)], delay=0.1))
    async with http.post(server.url + "/api/chat", json=CHAT) as response:
        reader = FrameReader(response)
        start = await reader.next_event()
        assert start is not None
        url = f"{server.url}/api/chat/streams/{start.event['stream_id']}"
        async with http.get(url, params={"after": "0"}) as follower:
            followed = events(await FrameReader(follower).all())
        original = events(await reader.all())
    assert followed == original
    assert followed[-1]["type"] == "end"


async def test_unknown_stream_is_404_envelope(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(f"{server.url}/api/chat/streams/unknown") as response:
        assert response.status == 404
        body = await response.json()
    assert body["code"] == 65
    assert "unknown" in body["message"]


async def test_finished_stream_expires_after_its_ttl(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    short = await start_server(stream_ttl_seconds="0.5", provider="echo", echo_delay_ms="0")
    async with http.post(short.url + "/api/chat", json=CHAT) as response:
        stream_id = events(await FrameReader(response).all())[0]["stream_id"]
    url = f"{short.url}/api/chat/streams/{stream_id}"
    async with http.get(url) as response:
        assert response.status == 200
        await response.read()
    await asyncio.sleep(1.0)
    async with http.get(url) as response:
        assert response.status == 404


async def test_client_leaving_while_the_stream_waits_logs_no_error(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    # The response checked its pump's state while the pump's cancellation was still pending,
    # and logged an InvalidStateError traceback for every client that left mid-stream.
    upstream.reset(SLOW)
    log_before = len(server.log())
    response, _ = await open_stream(http, server, deltas=1)
    response.close()
    await asyncio.wait_for(upstream.records[-1].closed.wait(), timeout=1.0)
    await asyncio.sleep(0.2)
    assert "Traceback" not in server.log()[log_before:]
