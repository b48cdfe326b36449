"""The UI API on two nodes sharing Redis and a database: a chat begun on one node is resumed
(by the AI SDK's own client) and stopped on the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest_asyncio

from .fakeupstream import FakeUpstream, Script
from .nodes import node_env, start_nodes
from .redisserver import SHARED_URL
from .servers import ServerProcess
from .test_ui_api import body
from .test_ui_js import new_chat, run_ui, text_of

SLOW = Script(tokens=[f"w{i} " for i in range(40)], delay=0.05)


@pytest_asyncio.fixture(scope="module")
async def pair(
    upstream: FakeUpstream, redis_prefix: str
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Two nodes with no detach grace: a native stream would stop as soon as its client left."""
    env = node_env(upstream, SHARED_URL, f"{redis_prefix}ui:", detach_grace_seconds="0")
    a, b = await start_nodes(2, env)
    yield a, b
    a.stop()
    b.stop()


async def begin(http: aiohttp.ClientSession, node: ServerProcess, chat_id: str) -> Any:
    """POST a message to `node`; the open response, after its first text chunk."""
    response = await http.post(f"{node.url}/api/ui/chat?uid=7", json=body(chat_id))
    assert response.status == 200, await response.text()
    while b"text-delta" not in await response.content.readline():
        pass
    return response


async def test_an_answer_begun_on_one_node_is_resumed_whole_on_the_other(
    http: aiohttp.ClientSession, pair: tuple[ServerProcess, ServerProcess], upstream: FakeUpstream
) -> None:
    a, b = pair
    upstream.reset(SLOW)
    chat_id = new_chat()
    response = await begin(http, a, chat_id)
    response.close()  # the page reloads, and its reconnect lands on the other node
    await asyncio.sleep(0.2)
    result = await run_ui("resume", b.url, chat_id)
    assert text_of(result["outcome"]["message"]) == "".join(SLOW.tokens)
    assert (await run_ui("resume", b.url, chat_id))["outcome"] is None
    assert len(upstream.records[0].token_times) == len(SLOW.tokens)


async def test_a_stop_on_the_other_node_stops_the_answer_and_keeps_its_text(
    http: aiohttp.ClientSession, pair: tuple[ServerProcess, ServerProcess], upstream: FakeUpstream
) -> None:
    a, b = pair
    upstream.reset(SLOW)
    chat_id = new_chat()
    response = await begin(http, a, chat_id)
    async with http.post(f"{b.url}/api/ui/chat/{chat_id}/stop?uid=7") as stop:
        assert (await stop.json())["data"] == {"id": chat_id, "stopped": True}
    rest = await response.read()
    response.close()
    chunks = [line[6:] for line in rest.splitlines() if line.startswith(b"data: ")]
    assert chunks[-2:] == [b'{"type":"abort","reason":"cancelled"}', b"[DONE]"]
    await asyncio.wait_for(upstream.records[0].closed.wait(), timeout=2)
    async with http.get(f"{b.url}/api/ui/chat/{chat_id}?uid=7") as restored:
        stored = await restored.json()
    partial = text_of(stored[-1])
    assert partial
    assert len(partial) < len("".join(SLOW.tokens))
    assert "".join(SLOW.tokens).startswith(partial)
    deltas = [orjson.loads(c) for c in chunks if c.startswith(b'{"type":"text-delta"')]
    assert partial.endswith("".join(d["delta"] for d in deltas))


async def test_kill_9_of_the_writing_node_ends_a_resumed_ui_stream_with_an_error_chunk(
    http: aiohttp.ClientSession, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = node_env(upstream, SHARED_URL, f"{redis_prefix}uideath:", node_timeout_seconds="2")
    a, b = await start_nodes(2, env)
    try:
        upstream.reset(Script(tokens=[f"t{i} " for i in range(600)], delay=0.05))
        chat_id = new_chat()
        response = await begin(http, a, chat_id)
        async with http.get(f"{b.url}/api/ui/chat/{chat_id}/stream?uid=7") as follower:
            assert follower.status == 200
            await follower.content.readline()
            assert a.proc is not None
            a.proc.kill()
            rest = await asyncio.wait_for(follower.read(), timeout=15)
        response.close()
        last = [line for line in rest.splitlines() if line.startswith(b"data: ")][-1]
        # The SDK's own error chunk (the native stream's `error` event fails its schema).
        assert set(orjson.loads(last[6:])) == {"type", "errorText"}
        # The answer is no longer running: nothing to resume, its text kept.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            async with http.get(f"{b.url}/api/ui/chat/{chat_id}/stream?uid=7") as again:
                if again.status == 204:
                    break
                await again.read()
            assert asyncio.get_running_loop().time() < deadline, "still running"
            await asyncio.sleep(0.2)
        assert "Traceback" not in b.log(), b.log()
    finally:
        for node in (a, b):
            node.stop()
