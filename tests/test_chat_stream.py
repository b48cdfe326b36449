"""The native stream against a real server and the fake upstream: format, timing, failures."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script, tool_call_deltas
from .servers import ServerProcess
from .sseclient import FrameReader, events

CHAT = {"uid": 1, "message": "你好"}


async def post_chat(http: aiohttp.ClientSession, server: ServerProcess, **body: Any) -> Any:
    return await http.post(server.url + "/api/chat", json={**CHAT, **body})


async def test_stream_headers(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    async with await post_chat(http, server) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in response.headers
        assert len(response.headers["Trace-Id"]) >= 16
        await response.read()


async def test_events_are_contiguous_and_end_once(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    async with await post_chat(http, server) as response:
        frames = await FrameReader(response).all()
    for frame in frames:
        # Every event is exactly one `data:` line: the seed's naive parser reads it.
        assert frame.is_ping or len(frame.lines) == 1, frame.raw
    got = events(frames)
    assert [e["index"] for e in got] == list(range(len(got)))
    assert [e["is_end"] for e in got] == [False] * (len(got) - 1) + [True]
    start, *deltas, end = got
    assert start["type"] == "start"
    assert start["uid"] == 1
    assert start["model"]
    assert {"conversation_id", "message_id", "stream_id"} <= start.keys()
    assert "".join(d["delta"] for d in deltas) == "Hello, world!"
    assert end == {
        "type": "end",
        "index": len(got) - 1,
        "is_end": True,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 2, "completion_tokens": 5},
    }
    record = upstream.records[-1]
    assert record.body["messages"] == [{"role": "user", "content": "你好"}]
    assert record.body["stream"] is True


async def test_each_event_arrives_before_the_next_token_is_produced(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=[f"t{i} " for i in range(6)], delay=0.2))
    async with await post_chat(http, server) as response:
        frames = await FrameReader(response).all()
    deltas = [f for f in frames if not f.is_ping and f.event["type"] == "delta"]
    sent = upstream.records[-1].token_times
    assert len(deltas) == len(sent) == 6
    for i in range(5):
        assert deltas[i].at < sent[i + 1], f"delta {i} arrived after token {i + 1} was sent"
        assert deltas[i].at - sent[i] < 0.1


async def test_pings_cover_silence_before_the_first_token(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=["late"], first_delay=3.0))
    started = time.monotonic()
    async with await post_chat(http, server) as response:
        reader = FrameReader(response)
        first = await reader.next()
        assert first is not None
        assert first.event["type"] == "start"
        assert first.at - started < 1.0, "the start event waits for no token"
        frames = await reader.all()
    pings = [f for f in frames if f.is_ping]
    assert len(pings) >= 2
    assert all(f.raw == b": ping" for f in pings)
    assert events(frames)[-1]["type"] == "end"


async def test_upstream_down_is_503(http: aiohttp.ClientSession, start_server: StartServer) -> None:
    down = await start_server(openai_base_url="http://127.0.0.1:9/v1")
    async with http.post(down.url + "/api/chat", json=CHAT) as response:
        assert response.status == 503
        body = await response.json()
        trace_id = response.headers["trace-id"]
    assert body["code"] == 63
    assert body["data"] is None
    assert "127.0.0.1:9" not in body["message"], "the upstream's address is the operator's"
    await down.logged(trace_id, "127.0.0.1:9")


async def test_upstream_401_is_a_502_without_the_upstreams_text(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(status=401))
    async with await post_chat(http, server) as response:
        assert response.status == 502, "the upstream's 401 is not the caller's"
        body = await response.json()
        trace_id = response.headers["trace-id"]
    assert "401" not in body["message"]
    assert "bad api key" not in body["message"]
    assert upstream.base_url not in body["message"]
    line = await server.logged(trace_id, "bad api key")
    assert "401" in line
    assert upstream.base_url in line


async def test_upstream_rate_limit_is_429_with_its_retry_after(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(
        Script(
            status=429,
            error_body=b'{"error":{"message":"slow down"}}',
            headers={"Retry-After": "12"},
        )
    )
    async with await post_chat(http, server) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "12"
        body = await response.json()
        assert body["code"] == 63
        assert "slow down" not in body["message"]
        trace_id = response.headers["trace-id"]
    await server.logged(trace_id, "slow down")


async def test_upstream_silent_before_headers_is_504(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    impatient = await start_server(upstream_read_timeout="0.5")
    upstream.reset(Script(hang_before_headers=True))
    async with http.post(impatient.url + "/api/chat", json=CHAT) as response:
        assert response.status == 504
        body = await response.json()
    assert body["code"] == 60
    assert "超时" in body["message"]


async def test_upstream_error_after_three_tokens_ends_with_error_event(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(error_after=3))
    async with await post_chat(http, server) as response:
        got = events(await FrameReader(response).all())
        trace_id = response.headers["trace-id"]
    assert [e["type"] for e in got] == ["start", "delta", "delta", "delta", "error"]
    assert [e["index"] for e in got] == [0, 1, 2, 3, 4]
    assert got[-1]["is_end"] is True
    assert got[-1]["code"] == "upstream_error"
    assert "upstream exploded" not in got[-1]["message"], "the upstream's text is for the log"
    await server.logged(trace_id, "upstream exploded")


async def test_upstream_connection_lost_mid_answer_ends_with_error_event(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(drop_after=2))
    async with await post_chat(http, server) as response:
        got = events(await FrameReader(response).all())
    assert [e["type"] for e in got] == ["start", "delta", "delta", "error"]
    assert got[-1]["is_end"] is True


async def test_upstream_silent_mid_answer_ends_with_timeout_event(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    impatient = await start_server(upstream_read_timeout="0.5")
    upstream.reset(Script(hang_after=1))
    async with http.post(impatient.url + "/api/chat", json=CHAT) as response:
        got = events(await FrameReader(response).all())
    assert [e["type"] for e in got] == ["start", "delta", "error"]
    assert got[-1]["code"] == "upstream_timeout"


async def test_unknown_model_is_404(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    # DESIGN §10: unknown (or not the key's) is 404, code 65, as on /v1.
    async with await post_chat(http, server, model="no-such-model") as response:
        assert response.status == 404
        body = await response.json()
    assert body["code"] == 65
    assert "no-such-model" in body["message"]


async def test_the_native_stream_stays_plain_text_whatever_the_model_sends(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(
        Script(
            deltas=[
                {"reasoning_content": "hmm"},
                {"content": "Hi"},
                *tool_call_deltas([("call_1", "f", "{}")]),
            ],
            finish_reason="content_filter",
        )
    )
    async with await post_chat(http, server) as response:
        got = events(await FrameReader(response).all())
    assert [e["type"] for e in got] == ["start", "delta", "end"]
    assert got[1]["delta"] == "Hi"
    assert got[2]["finish_reason"] == "stop", "the contract's reasons only"
    assert [e["index"] for e in got] == [0, 1, 2]
