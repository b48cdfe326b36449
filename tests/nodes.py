"""Several real streamchat nodes sharing one Redis, for the multi-node tests."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from .fakeupstream import FakeUpstream, Record, Script
from .servers import ServerProcess
from .sseclient import FrameReader, events, take_events

CHAT = {"uid": 7, "message": "tell me a story"}


def node_env(
    upstream: FakeUpstream, redis_url: str, prefix: str, **settings: str
) -> dict[str, str]:
    """The environment of one node: the fake upstream, the shared Redis, fast pings.

    Nodes started with the same environment share one database (a fresh SQLite file).
    """
    database = Path(tempfile.mkdtemp(prefix="streamchat-nodes-")) / "chat.db"
    env = {
        "STREAMCHAT_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "STREAMCHAT_PROVIDER": "openai",
        "STREAMCHAT_OPENAI_BASE_URL": upstream.base_url,
        "STREAMCHAT_REDIS_URL": redis_url,
        "STREAMCHAT_REDIS_KEY_PREFIX": prefix,
        "STREAMCHAT_PING_SECONDS": "1",
    }
    env.update({f"STREAMCHAT_{k.upper()}": v for k, v in settings.items()})
    return env


async def start_nodes(count: int, env: dict[str, str]) -> list[ServerProcess]:
    """`count` nodes with the same settings, each on its own port."""
    nodes = [ServerProcess(env) for _ in range(count)]
    await asyncio.gather(*(node.start() for node in nodes))
    return nodes


async def read_events(
    http: aiohttp.ClientSession, url: str, count: int, **kwargs: Any
) -> tuple[aiohttp.ClientResponse, list[dict[str, Any]]]:
    """POST a chat to `url` and read its first `count` events; the response stays open."""
    response = await http.post(url + "/api/chat", json=CHAT, **kwargs)
    assert response.status == 200, await response.text()
    reader = FrameReader(response)
    got = await take_events(reader, count)
    return response, got


async def start_chat(
    http: aiohttp.ClientSession, url: str, upstream: FakeUpstream, script: Script, count: int
) -> tuple[aiohttp.ClientResponse, list[dict[str, Any]], str, Record]:
    """A chat on the node at `url` with the upstream playing `script`, `count` events read:
    the open response, those events, the stream id, and the upstream's record of it."""
    upstream.reset(script)
    response, seen = await read_events(http, url, count)
    return response, seen, str(seen[0]["stream_id"]), upstream.records[-1]


async def resume(
    http: aiohttp.ClientSession, url: str, stream_id: str, after: int, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every event after `after`, from the resume endpoint of the node at `url`."""
    async with http.get(
        f"{url}/api/chat/streams/{stream_id}", params={"after": str(after)}, **kwargs
    ) as response:
        assert response.status == 200, await response.text()
        return events(await FrameReader(response).all())


def text(got: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in got if e["type"] == "delta")


def assert_contiguous(got: list[dict[str, Any]]) -> None:
    """Indexes 0, 1, 2 … with no gap and no repeat, and exactly one final event, last."""
    assert [e["index"] for e in got] == list(range(len(got)))
    assert [e["is_end"] for e in got] == [False] * (len(got) - 1) + [True]
