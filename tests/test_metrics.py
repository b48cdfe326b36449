"""GET /metrics of real servers: the counters and histograms of DESIGN.md §9 move as chats run."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .nodes import node_env
from .scrape import Samples, scrape, value
from .servers import ServerProcess
from .sseclient import FrameReader, events
from .test_cluster_workers import start_workers
from .test_local_provider import busy_model

P = "streamchat:"
CHAT = {"uid": 3, "message": "count to five"}


async def chat(http: aiohttp.ClientSession, url: str) -> list[dict[str, object]]:
    async with http.post(url + "/api/chat", json=CHAT) as response:
        assert response.status == 200, await response.text()
        return events(await FrameReader(response).all())


async def settled(
    http: aiohttp.ClientSession, url: str, name: str, expected: float, **labels: str
) -> Samples:
    """Scrape until `name` reaches `expected` (a generation's end is counted just before its
    last event is written: on a loaded machine a scrape may come in between)."""
    deadline = time.monotonic() + 10
    while True:
        samples = await scrape(http, url)
        if value(samples, name, **labels) == expected or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def test_a_chat_moves_ttft_tokens_and_success_and_running_returns_to_0(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    before = await scrape(http, server.url)
    upstream.reset(Script(tokens=["a", "b", "c", "d", "e"], delay=0.01))
    got = await chat(http, server.url)
    assert got[-1]["type"] == "end"
    model = str(got[0]["model"])
    labels = {"api": "native", "model": model}
    count = P + "time_to_first_token_seconds_count"
    after = await settled(http, server.url, count, value(before, count, **labels) + 1, **labels)
    for histogram in ("time_to_first_token", "e2e_request_latency"):
        name = f"{P}{histogram}_seconds_count"
        assert value(after, name, **labels) == value(before, name, **labels) + 1, name
    itl = P + "inter_token_latency_seconds_count"
    assert value(after, itl, **labels) == value(before, itl, **labels) + 4  # 5 tokens, 4 gaps
    tokens = P + "generation_tokens_total"
    assert value(after, tokens) - value(before, tokens) == 5
    success = P + "request_success_total"
    assert value(after, success, finished_reason="stop") == (
        value(before, success, finished_reason="stop") + 1
    )
    assert value(after, P + "num_requests_running") == 0
    writes = P + "store_write_seconds_count"
    assert value(after, writes) > value(before, writes)  # the turn and the answer's end


async def test_a_running_stream_counts_as_running(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=["x"] * 40, delay=0.1))
    async with http.post(server.url + "/api/chat", json=CHAT) as response:
        reader = FrameReader(response)
        start = await reader.next_event()
        assert start is not None
        await reader.next_event()  # the first delta
        assert value(await scrape(http, server.url), P + "num_requests_running") >= 1
        stream_id = start.event["stream_id"]
        await http.post(server.url + f"/api/chat/streams/{stream_id}/cancel")
        await reader.all()
    after = await settled(http, server.url, P + "num_requests_running", 0)
    assert value(after, P + "num_requests_running") == 0
    assert value(after, P + "request_success_total", finished_reason="cancelled") >= 1


async def test_errors_are_counted_by_code_refused_and_after_the_start(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    errors = P + "request_errors_total"
    before = await scrape(http, server.url)
    upstream.reset(Script(status=500))
    async with http.post(server.url + "/api/chat", json=CHAT) as response:
        assert response.status == 502
    upstream.reset(Script(tokens=["a", "b", "c"], error_after=1))
    got = await chat(http, server.url)
    assert got[-1]["type"] == "error"
    expected = value(before, errors, code="upstream_error") + 2
    after = await settled(http, server.url, errors, expected, code="upstream_error")
    assert value(after, errors, code="upstream_error") == expected


async def test_the_openai_api_is_labelled_openai(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(server.url + "/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        await response.read()
    after = await scrape(http, server.url)
    assert value(after, P + "time_to_first_token_seconds_count", api="openai") >= 1


async def test_waiting_counts_the_requests_queued_for_the_local_model(
    http: aiohttp.ClientSession, one_waiting: ServerProcess
) -> None:
    waiting = P + "num_requests_waiting"
    async with busy_model(http, one_waiting) as (running, queued):
        during = await scrape(http, one_waiting.url)
        assert value(during, waiting) == 1
        assert value(during, P + "num_requests_running") == 2
        for chat_ in (running, queued):
            await http.post(f"{one_waiting.url}/api/chat/streams/{chat_.stream_id}/cancel")
    after = await settled(http, one_waiting.url, waiting, 0)
    assert value(after, waiting) == 0


async def test_metrics_off_serve_no_metrics(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(metrics="false")
    async with http.get(server.url + "/metrics") as response:
        assert response.status == 404


async def test_workers_metrics_add_up_across_workers(
    http: aiohttp.ClientSession, upstream: FakeUpstream
) -> None:
    env = node_env(upstream, "", "unused:")
    server = await start_workers(env)
    try:
        upstream.reset(Script(tokens=["a", "b", "c"]))
        chats = 8
        async with aiohttp.ClientSession() as fresh:  # new connections: both workers serve
            for _ in range(chats):
                connector = aiohttp.TCPConnector(force_close=True)
                async with aiohttp.ClientSession(connector=connector) as one:
                    assert (await chat(one, server.url))[-1]["type"] == "end"
            count = P + "time_to_first_token_seconds_count"
            await settled(fresh, server.url, count, chats)
            # Whichever worker answers the scrape, it reports both workers' counts.
            for _ in range(6):
                connector = aiohttp.TCPConnector(force_close=True)
                async with aiohttp.ClientSession(connector=connector) as one:
                    samples = await scrape(one, server.url)
                assert value(samples, count) == chats
                assert value(samples, P + "generation_tokens_total") == 3 * chats
                assert value(samples, P + "num_requests_running") == 0
    finally:
        server.stop()
