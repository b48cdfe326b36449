"""Two nodes and Redis (DESIGN.md §9): a node killed with -9 is noticed by the other; a node
given SIGTERM ends its streams for followers on the other node too."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import aiohttp

from .fakeupstream import FakeUpstream, Script
from .nodes import node_env, read_events, start_nodes
from .redisserver import SHARED_URL
from .sseclient import FrameReader, events

TIMEOUT = 2.0


def answer_status(database_url: str, message_id: str) -> str:
    path = database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as db:
        (status,) = db.execute("SELECT status FROM messages WHERE id = ?", (message_id,)).fetchone()
    return str(status)


async def test_kill_9_of_the_writing_node_ends_its_followers_elsewhere_and_its_answer(
    http: aiohttp.ClientSession, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = node_env(upstream, SHARED_URL, f"{redis_prefix}death:", node_timeout_seconds=str(TIMEOUT))
    a, b = await start_nodes(2, env)
    try:
        async with http.get(b.url + "/readyz") as ready:
            assert ready.status == 200
            assert (await ready.json())["data"]["checks"]["streams"] is True
        upstream.reset(Script(tokens=[f"t{i} " for i in range(600)], delay=0.05))
        response, seen = await read_events(http, a.url, 3)
        stream_id, message_id = str(seen[0]["stream_id"]), str(seen[0]["message_id"])
        # A second stream that nobody follows from B: found through A's last beat.
        unfollowed, other = await read_events(http, a.url, 3)
        await asyncio.sleep(TIMEOUT / 2)  # two beats of A's name it
        async with http.get(
            f"{b.url}/api/chat/streams/{stream_id}", params={"after": "2"}
        ) as follower:
            assert follower.status == 200
            reader = FrameReader(follower)
            first = await reader.next_event()
            assert first is not None
            assert first.event["index"] == 3
            assert a.proc is not None
            a.proc.kill()
            killed = time.monotonic()
            last = first.event
            while not last["is_end"]:
                frame = await asyncio.wait_for(reader.next_event(), TIMEOUT * 5)
                assert frame is not None, "the follower's stream closed without a final event"
                last = frame.event
            noticed = time.monotonic() - killed
        response.close()
        unfollowed.close()
        assert last["type"] == "error", last
        assert last["code"] == "stream_unavailable"
        # Within the timeout (and the watch's period, a quarter of it), with room for a
        # loaded machine.
        assert noticed < TIMEOUT * 3, noticed
        deadline = time.monotonic() + 10
        url = env["STREAMCHAT_DATABASE_URL"]
        for answer in (message_id, str(other[0]["message_id"])):
            while answer_status(url, answer) != "interrupted":
                assert time.monotonic() < deadline, answer_status(url, answer)
                await asyncio.sleep(0.1)
        assert "Traceback" not in b.log(), b.log()
    finally:
        for node in (a, b):
            node.stop()


async def test_sigterm_of_the_writing_node_gives_followers_elsewhere_the_final_event(
    http: aiohttp.ClientSession, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = node_env(upstream, SHARED_URL, f"{redis_prefix}drain:", shutdown_grace_seconds="1")
    a, b = await start_nodes(2, env)
    try:
        upstream.reset(Script(tokens=[f"t{i} " for i in range(600)], delay=0.05))
        response, seen = await read_events(http, a.url, 3)
        stream_id = str(seen[0]["stream_id"])
        async with http.get(
            f"{b.url}/api/chat/streams/{stream_id}", params={"after": "2"}
        ) as follower:
            assert follower.status == 200
            reader = FrameReader(follower)
            assert a.proc is not None
            a.proc.send_signal(signal.SIGTERM)
            rest = events(await asyncio.wait_for(reader.all(), 30))
        writer_rest = events(await FrameReader(response).all())
        response.close()
        assert rest[-1]["type"] == "error", rest[-1]
        assert rest[-1]["code"] == "interrupted"
        assert writer_rest[-1] == rest[-1]  # the same final event, on both nodes
        assert await asyncio.to_thread(a.proc.wait, 20) == 0, a.log()
    finally:
        for node in (a, b):
            node.stop()
