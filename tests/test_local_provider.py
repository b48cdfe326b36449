"""The embedded model through `POST /api/chat` on a real server: answers, usage, stop, queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio

from .conftest import StartServer
from .localmodel import (
    CJK,
    HELLO,
    SMALL,
    STORY,
    cpu_used,
    generation_line,
    local_settings,
    stopped_after_ms,
)
from .servers import ServerProcess
from .sseclient import Frame, FrameReader, events


@pytest_asyncio.fixture(scope="session")
async def one_slot(start_server: StartServer, model_dir: Path) -> ServerProcess:
    """The small local model answering one request at a time, one more waiting in its queue."""
    settings = local_settings(
        model_dir, local_max_tokens="400", local_max_queue="1", local_slots="1"
    )
    return await start_server(120, **settings)


async def ask(http: aiohttp.ClientSession, server: ServerProcess, message: str) -> list[Frame]:
    async with http.post(server.url + "/api/chat", json={"uid": 1, "message": message}) as response:
        assert response.status == 200
        return await FrameReader(response).all()


async def start_and_deltas(reader: FrameReader, deltas: int) -> dict[str, Any]:
    """Read the start event and then `deltas` delta events; return the start event."""
    start = await reader.next_event()
    assert start is not None
    for _ in range(deltas):
        frame = await reader.next_event()
        assert frame is not None
        assert frame.event["type"] == "delta", frame.event
    return start.event


def answer(frames: list[Frame]) -> str:
    return answer_text(events(frames))


def answer_text(got: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in got if e["type"] == "delta")


async def assert_model_stopped(
    server: ServerProcess, response: aiohttp.ClientResponse, stopped_at: float, busy: float
) -> None:
    """The model computed before `stopped_at` and nothing from 100 ms after it."""
    await asyncio.sleep(max(0.0, stopped_at + 0.1 - time.monotonic()))
    idle = await cpu_used(server, 0.5)
    assert busy > 0.15, f"the measure saw no generation ({busy:.2f} CPU s in 0.5 s)"
    assert idle < 0.05, f"{idle:.2f} CPU s used from 100 ms after the stop"
    line = await generation_line(server, response.headers["Trace-Id"])
    assert stopped_after_ms(line) <= 100, line


async def assert_serves_the_next_request(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    got = events(await ask(http, server, HELLO["message"]))
    assert got[-1]["type"] == "end"
    assert answer_text(got)


def first_delta(frames: list[Frame]) -> Frame:
    return next(f for f in frames if not f.is_ping and f.event["type"] == "delta")


@dataclass
class Chat:
    """A chat response being read, and its stream's id."""

    response: aiohttp.ClientResponse
    reader: FrameReader
    stream_id: str = ""

    async def cancel(self, http: aiohttp.ClientSession, server: ServerProcess) -> None:
        url = f"{server.url}/api/chat/streams/{self.stream_id}/cancel"
        async with http.post(url) as response:
            assert response.status == 200


@asynccontextmanager
async def busy_model(
    http: aiohttp.ClientSession, server: ServerProcess
) -> AsyncIterator[tuple[Chat, Chat]]:
    """A long answer being generated, and a request waiting behind it (its start event read)."""
    url = server.url + "/api/chat"
    async with http.post(url, json=STORY) as running_response:
        running = Chat(running_response, FrameReader(running_response))
        running.stream_id = (await start_and_deltas(running.reader, 1))["stream_id"]
        async with http.post(url, json=HELLO) as waiting_response:
            waiting = Chat(waiting_response, FrameReader(waiting_response))
            waiting.stream_id = (await start_and_deltas(waiting.reader, 0))["stream_id"]
            yield running, waiting


async def test_an_english_question_streams_an_english_answer_token_by_token(
    http: aiohttp.ClientSession, short_answers: ServerProcess
) -> None:
    frames = await ask(http, short_answers, "Explain Server-Sent Events in one sentence.")
    start, *deltas, end = events(frames)
    assert start["model"] == SMALL
    assert len(deltas) >= 5
    arrivals = [f.at for f in frames if not f.is_ping and f.event["type"] == "delta"]
    assert len(set(arrivals)) >= 5, "the deltas arrived in a few bursts, not token by token"
    assert arrivals[-1] - arrivals[0] > 0.1
    text = answer(frames)
    letters = [c for c in text if c.isalpha()]
    assert len(letters) >= 20
    assert all(c.isascii() for c in letters), text
    # 24 tokens cannot hold the answer: it is cut, and the count is the tokenizer's.
    assert end["finish_reason"] == "length"
    assert end["usage"]["completion_tokens"] == 24


async def test_a_chinese_question_gets_a_chinese_answer(
    http: aiohttp.ClientSession, short_answers: ServerProcess
) -> None:
    frames = await ask(http, short_answers, "用中文简单介绍一下你自己。")
    text = answer(frames)
    assert len(CJK.findall(text)) >= 5, text
    letters = [c for c in text if c.isalpha()]
    assert len(CJK.findall(text)) / len(letters) > 0.7, text
    assert events(frames)[-1]["type"] == "end"


async def test_usage_counts_the_prompt_with_the_models_tokenizer(
    http: aiohttp.ClientSession, short_answers: ServerProcess
) -> None:
    plain = events(await ask(http, short_answers, "Say OK."))
    longer = events(await ask(http, short_answers, "Say OK." + " word" * 20))
    usage, longer_usage = plain[-1]["usage"], longer[-1]["usage"]
    # " word" is one token of Qwen's vocabulary; the chat template adds the same to both.
    assert longer_usage["prompt_tokens"] - usage["prompt_tokens"] == 20
    assert usage["prompt_tokens"] > 10  # the template's system prompt and role markers count
    deltas = sum(e["type"] == "delta" for e in plain)
    assert deltas <= usage["completion_tokens"] <= 24


async def test_cancel_stops_the_model_within_100ms(
    http: aiohttp.ClientSession, one_waiting: ServerProcess
) -> None:
    server = one_waiting
    async with http.post(server.url + "/api/chat", json=STORY) as response:
        reader = FrameReader(response)
        chat = Chat(response, reader, (await start_and_deltas(reader, 3))["stream_id"])
        busy = await cpu_used(server, 0.5)
        await chat.cancel(http, server)
        stopped_at = time.monotonic()
        rest = events(await reader.all())
    assert rest[-1]["type"] == "end"
    assert rest[-1]["finish_reason"] == "cancelled"
    await assert_model_stopped(server, response, stopped_at, busy)
    await assert_serves_the_next_request(http, server)


async def test_disconnect_with_grace_0_stops_the_model_within_100ms(
    http: aiohttp.ClientSession, one_waiting: ServerProcess
) -> None:
    server = one_waiting
    response = await http.post(server.url + "/api/chat", json=STORY)
    await start_and_deltas(FrameReader(response), 3)
    busy = await cpu_used(server, 0.5)
    response.close()
    stopped_at = time.monotonic()
    await assert_model_stopped(server, response, stopped_at, busy)
    await assert_serves_the_next_request(http, server)


async def test_with_one_slot_concurrent_requests_are_answered_one_after_the_other(
    http: aiohttp.ClientSession, one_slot: ServerProcess
) -> None:
    first, second = await asyncio.gather(
        ask(http, one_slot, "Say hello."), ask(http, one_slot, "Say goodbye.")
    )
    for frames in (first, second):
        assert events(frames)[0]["type"] == "start"
        assert events(frames)[-1]["type"] == "end"
        assert answer(frames)
    one, other = sorted((first, second), key=lambda frames: first_delta(frames).at)
    assert first_delta(other).at >= one[-1].at, "the model ran both answers at once"
    assert one_slot.proc is not None
    assert one_slot.proc.poll() is None


async def test_a_full_queue_is_503_at_once_and_a_waiting_client_gets_pings(
    http: aiohttp.ClientSession, one_slot: ServerProcess
) -> None:
    async with busy_model(http, one_slot) as (running, waiting):
        refused_at = time.monotonic()
        async with http.post(one_slot.url + "/api/chat", json=HELLO) as refused:
            assert refused.status == 503
            body = await refused.json()
        assert time.monotonic() - refused_at < 0.5
        assert body["code"] == 63
        # The client gets the generic message; what to tune is in the operator's log.
        assert body["message"] == "上游模型服务不可用"
        assert "STREAMCHAT_LOCAL_MAX_QUEUE=1" in one_slot.log()
        ping = await waiting.reader.next()
        assert ping is not None
        assert ping.is_ping
        await running.cancel(http, one_slot)
        assert events(await running.reader.all())[-1]["finish_reason"] == "cancelled"
        served = events(await waiting.reader.all())
    assert served[-1]["type"] == "end"
    assert answer_text(served)


async def test_cancel_while_queued_ends_that_stream_and_spares_the_running_one(
    http: aiohttp.ClientSession, one_slot: ServerProcess
) -> None:
    async with busy_model(http, one_slot) as (running, waiting):
        cancelled_at = time.monotonic()
        await waiting.cancel(http, one_slot)
        got = events(await waiting.reader.all())
        assert time.monotonic() - cancelled_at < 0.5
        assert [e["type"] for e in got] == ["end"]
        assert got[0]["finish_reason"] == "cancelled"
        await start_and_deltas(running.reader, 2)  # the running answer goes on
        await running.cancel(http, one_slot)
        await running.reader.all()
    line = await generation_line(one_slot, waiting.response.headers["Trace-Id"])
    assert "cancelled while queued" in line
    await assert_serves_the_next_request(http, one_slot)
