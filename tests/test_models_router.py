"""Several models behind one endpoint (DESIGN §10), against a real server and three fake
upstreams: routing by name with each entry's own key and upstream id, fallbacks before the
first token (500, 429, a refused connection) and none after it, metrics, readiness and the
access log by entry, and the official `openai` client on every model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
from openai import AsyncOpenAI

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .models import KEYS, KEYS_C, models_file, models_server, write_models
from .redisserver import SHARED_URL
from .scrape import scrape, value
from .servers import ServerProcess
from .sseclient import FrameReader, events


async def read_events(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    return events(await FrameReader(response).all())


async def post_chat(url: str, body: dict[str, Any], status: int = 200) -> list[dict[str, Any]]:
    """A native chat's events (or its error envelope, as the one item, when refused)."""
    async with aiohttp.ClientSession() as http, http.post(url + "/api/chat", json=body) as response:
        assert response.status == status, await response.text()
        return await read_events(response) if status == 200 else [await response.json()]


UPSTREAM_NAMES = ("a", "b", "c")


@pytest_asyncio.fixture(scope="module")
async def fakes() -> AsyncIterator[dict[str, FakeUpstream]]:
    upstreams = {name: FakeUpstream() for name in UPSTREAM_NAMES}
    for upstream in upstreams.values():
        await upstream.start()
    yield upstreams
    for upstream in upstreams.values():
        await upstream.close()


@pytest.fixture(autouse=True)
def _fresh(fakes: dict[str, FakeUpstream]) -> None:
    for upstream in fakes.values():
        upstream.reset()


@pytest_asyncio.fixture(scope="module")
async def routed(
    fakes: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory, scratch: str
) -> AsyncIterator[ServerProcess]:
    """Cooldown out of the way (a thousand refusals): these tests refuse on purpose."""
    path = write_models(tmp_path_factory.mktemp("routed"), models_file(**fakes))
    server = models_server(scratch, path, model_cooldown_failures="1000")
    await server.start()
    yield server
    server.stop()


def client_for(server: ServerProcess) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


async def stream_text(client: AsyncOpenAI, model: str) -> tuple[str, set[str]]:
    """The streamed answer's text, and the `model` of its chunks."""
    text, named = [], set()
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    async for chunk in stream:
        named.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
    return "".join(text), named


async def test_each_model_reaches_its_upstream_with_its_own_key_and_upstream_id(
    routed: ServerProcess, fakes: dict[str, FakeUpstream]
) -> None:
    async with client_for(routed) as client:
        assert [m.id async for m in client.models.list()] == [
            "fake-a",
            "fake-b",
            "fake-c",
            "echo",
            "dead",
        ]
        assert (await client.models.retrieve("echo")).owned_by == "streamchat-echo"
        for name, upstream in fakes.items():
            text, named = await stream_text(client, f"fake-{name}")
            assert (text, named) == ("Hello, world!", {f"fake-{name}"})
            [record] = upstream.records
            assert record.body["model"] == ("vendor-a" if name == "a" else f"fake-{name}")
            key = {**KEYS, **KEYS_C}[f"KEY_{name.upper()}"]
            assert record.headers["authorization"] == f"Bearer {key}"
            upstream.records.clear()
        text, named = await stream_text(client, "echo")
        assert (text, named) == ("hi", {"echo"})
    assert all(not upstream.records for upstream in fakes.values())
    # No key's value in the model list, the readiness checks or the log.
    async with aiohttp.ClientSession() as http:
        async with http.get(routed.url + "/v1/models") as response:
            listed = await response.text()
        async with http.get(routed.url + "/readyz") as response:
            ready = await response.text()
    for key in {**KEYS, **KEYS_C}.values():
        assert key not in listed + ready + routed.log()


async def test_no_model_is_the_default(
    routed: ServerProcess, fakes: dict[str, FakeUpstream]
) -> None:
    events = await post_chat(routed.url, {"uid": 1, "message": "x"})
    assert events[0]["model"] == "fake-a"
    assert fakes["a"].records
    assert not fakes["b"].records


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_refusal_before_the_first_token_falls_back_to_the_next_model(
    routed: ServerProcess, fakes: dict[str, FakeUpstream], status: int
) -> None:
    fakes["a"].reset(Script(status=status))
    async with client_for(routed) as client:
        text, named = await stream_text(client, "fake-a")
    assert (text, named) == ("Hello, world!", {"fake-b"})
    assert len(fakes["a"].records) == 1
    assert len(fakes["b"].records) == 1
    assert fakes["b"].records[0].body["model"] == "fake-b"
    assert fakes["b"].records[0].headers["authorization"] == f"Bearer {KEYS['KEY_B']}"
    line = await routed.logged('"POST /v1/chat/completions" 200', "model=fake-b tried=2")
    assert "tried=2" in line


async def test_the_native_stream_names_the_model_that_answered(
    routed: ServerProcess, fakes: dict[str, FakeUpstream]
) -> None:
    fakes["a"].reset(Script(status=502))
    events = await post_chat(routed.url, {"uid": 1, "message": "x", "model": "fake-a"})
    assert events[0]["type"] == "start"
    assert events[0]["model"] == "fake-b"
    assert events[-1]["type"] == "end"
    assert "".join(e["delta"] for e in events if e["type"] == "delta") == "Hello, world!"


async def test_a_refused_connection_falls_back(
    routed: ServerProcess, fakes: dict[str, FakeUpstream]
) -> None:
    async with client_for(routed) as client:
        text, named = await stream_text(client, "dead")
    assert (text, named) == ("Hello, world!", {"fake-b"})


async def test_fallbacks_go_on_in_order_and_the_last_refusal_is_the_answer(
    routed: ServerProcess, fakes: dict[str, FakeUpstream]
) -> None:
    # fake-a falls back to fake-b only (not to fake-b's own fallbacks).
    fakes["a"].reset(Script(status=500))
    fakes["b"].reset(Script(status=429))
    async with client_for(routed) as client:
        with pytest.raises(openai.RateLimitError):
            await stream_text(client, "fake-a")
        assert not fakes["c"].records
        fakes["b"].reset(Script(status=500))
        fakes["c"].reset(Script(tokens=["from c"]))
        text, named = await stream_text(client, "fake-b")
    assert (text, named) == ("from c", {"fake-c"})
    assert fakes["c"].records[0].body["model"] == "fake-c"


async def test_the_clients_own_mistake_does_not_fall_back(
    routed: ServerProcess, fakes: dict[str, FakeUpstream]
) -> None:
    fakes["a"].reset(Script(status=400, error_body=b'{"error":{"message":"bad input"}}'))
    async with client_for(routed) as client:
        with pytest.raises(openai.BadRequestError):
            await stream_text(client, "fake-a")
    assert not fakes["b"].records


async def test_no_switch_after_the_first_token(
    routed: ServerProcess, fakes: dict[str, FakeUpstream]
) -> None:
    fakes["a"].reset(Script(drop_after=2))
    events = await post_chat(routed.url, {"uid": 1, "message": "x", "model": "fake-a"})
    assert events[0]["model"] == "fake-a"
    assert [e["delta"] for e in events if e["type"] == "delta"] == ["Hel", "lo"]
    assert events[-1]["type"] == "error"
    assert not fakes["b"].records


async def test_metrics_and_readiness_by_model(
    routed: ServerProcess, fakes: dict[str, FakeUpstream]
) -> None:
    fakes["a"].reset(Script(status=500))
    async with aiohttp.ClientSession() as http:
        before = await scrape(http, routed.url)
        async with client_for(routed) as client:
            await stream_text(client, "fake-a")
        after = await scrape(http, routed.url)
        async with http.get(routed.url + "/readyz") as response:
            assert response.status == 200
            ready = await response.json()
    ttft = "streamchat:time_to_first_token_seconds_count"
    for model, more in (("fake-b", 1), ("fake-a", 0)):
        counted = value(after, ttft, api="openai", model=model)
        assert counted - value(before, ttft, api="openai", model=model) == more
    assert ready["data"]["checks"]["models"] == {
        "fake-a": True,
        "fake-b": True,
        "fake-c": True,
        "echo": True,
        "dead": True,
    }


async def test_an_unknown_model_is_404_on_both_apis(routed: ServerProcess) -> None:
    async with client_for(routed) as client:
        with pytest.raises(openai.NotFoundError) as raised:
            await stream_text(client, "nope")
        assert raised.value.code == "model_not_found"
    [refused] = await post_chat(routed.url, {"uid": 1, "message": "x", "model": "nope"}, 404)
    assert refused["code"] == 65


async def test_without_a_models_file_the_one_model_has_its_readiness_check(
    start_server: StartServer,
) -> None:
    server = await start_server(provider="echo", echo_delay_ms="0")
    async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as response:
        assert (await response.json())["data"]["checks"]["models"] == {"echo": True}


async def test_two_nodes_on_redis_route_the_same_way(
    fakes: dict[str, FakeUpstream],
    tmp_path_factory: pytest.TempPathFactory,
    scratch: str,
    redis_prefix: str,
) -> None:
    path = write_models(tmp_path_factory.mktemp("nodes"), models_file(**fakes))
    first = models_server(scratch, path, redis_url=SHARED_URL, redis_key_prefix=redis_prefix)
    # The same database and Redis: a stream started on one node is followed on the other.
    second = ServerProcess({k: v for k, v in first.env.items() if k != "STREAMCHAT_PORT"})
    await asyncio.gather(first.start(), second.start())
    try:
        fakes["a"].reset(Script(status=500))
        body = {"uid": 3, "message": "x", "model": "fake-a"}
        async with aiohttp.ClientSession() as http:
            async with http.post(first.url + "/api/chat", json=body) as response:
                started = await read_events(response)
            stream_id = started[0]["stream_id"]
            async with http.get(f"{second.url}/api/chat/streams/{stream_id}") as response:
                replayed = await read_events(response)
            assert started == replayed
            assert replayed[0]["model"] == "fake-b"
            async with client_for(second) as client:
                assert await stream_text(client, "fake-c") == ("Hello, world!", {"fake-c"})
                assert (await client.models.list()).data[0].id == "fake-a"
    finally:
        first.stop()
        second.stop()
