"""The Responses API on two nodes sharing one Redis (auth off): a background response started
on one node, its client gone after 10 events, is followed on the other from event 10 and
cancelled from there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from openai import AsyncOpenAI

from .fakeupstream import FakeUpstream, Script
from .nodes import node_env, start_nodes
from .redisserver import SHARED_URL
from .servers import ServerProcess
from .test_responses_api import MODEL, checked, tokens_sent

Pair = tuple[ServerProcess, ServerProcess]


@pytest_asyncio.fixture(scope="module")
async def pair(upstream: FakeUpstream, redis_prefix: str) -> AsyncIterator[Pair]:
    env = node_env(upstream, SHARED_URL, f"{redis_prefix}resp:", detach_grace_seconds="0")
    a, b = await start_nodes(2, env)
    yield a, b
    a.stop()
    b.stop()


def client(node: ServerProcess) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=node.url + "/v1", api_key="x", max_retries=0, timeout=30)


async def test_background_resumes_on_another_node_with_exactly_the_rest(
    pair: Pair, upstream: FakeUpstream
) -> None:
    a, b = pair
    words = [f" w{i}" for i in range(30)]
    upstream.reset(Script(tokens=words, delay=0.03))
    async with client(a) as on_a, client(b) as on_b:
        stream = await on_a.responses.create(
            model=MODEL, input="long", stream=True, background=True
        )
        first: list[Any] = []
        async for event in stream:
            first.append(event)
            if len(first) == 11:
                break
        await stream.close()
        rid = first[0].response.id
        rest = await on_b.responses.retrieve(rid, stream=True, starting_after=10)
        events = checked([event async for event in rest])
        assert [e.sequence_number for e in events] == list(range(11, 11 + len(events)))
        deltas = [e.delta for e in first + events if e.type == "response.output_text.delta"]
        assert "".join(deltas) == "".join(words)
        assert events[-1].type == "response.completed"
        assert (await on_b.responses.retrieve(rid)).output_text == "".join(words)


async def test_cancel_on_another_node(pair: Pair, upstream: FakeUpstream) -> None:
    a, b = pair
    upstream.reset(Script(tokens=[f" w{i}" for i in range(300)], delay=0.02))
    async with client(a) as on_a, client(b) as on_b:
        response = await on_a.responses.create(model=MODEL, input="long", background=True)
        record = await upstream.next_record()
        await tokens_sent(record, 5)
        cancelled = await on_b.responses.cancel(response.id)
        assert cancelled.status == "cancelled"
        assert cancelled.output_text.startswith(" w0 w1 w2 w3")
        await asyncio.wait_for(record.closed.wait(), timeout=2)
        assert len(record.token_times) < 300
