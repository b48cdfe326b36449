"""The in-process stream hub: replay, live follow, idle followers, retention."""

from __future__ import annotations

import asyncio

import pytest

from streamchat.hub import MemoryHub, StreamNotFound


def hub(ttl: float = 60, retain: int = 1 << 20) -> MemoryHub:
    return MemoryHub(ttl_seconds=ttl, retain_bytes=retain)


async def test_replay_after_n_then_end() -> None:
    h = hub()
    await h.create("s", on_idle=lambda: None)
    for payload in (b"0", b"1", b"2"):
        await h.append("s", payload)
    await h.append("s", b"3", last=True)
    sub = await h.subscribe("s", after=1)
    batch = await sub.next(1)
    assert batch is not None
    assert (batch.first_index, batch.payloads, batch.ended) == (2, [b"2", b"3"], True)


async def test_follow_live_and_ping_timeout() -> None:
    h = hub()
    await h.create("s", on_idle=lambda: None)
    sub = await h.subscribe("s", after=-1)
    assert await sub.next(0.05) is None  # silence: the response sends a ping
    waiter = asyncio.create_task(sub.next(5))
    await asyncio.sleep(0)
    await h.append("s", b"a")
    await h.append("s", b"b")  # coalesced with "a" into one batch
    batch = await waiter
    assert batch is not None
    assert batch.payloads == [b"a", b"b"]
    assert not batch.ended


async def test_last_follower_leaving_an_unfinished_stream_calls_on_idle() -> None:
    h = hub()
    idle: list[str] = []
    await h.create("s", on_idle=lambda: idle.append("s"))
    first, second = await h.subscribe("s", -1), await h.subscribe("s", -1)
    assert await h.followers("s") == 2
    await first.close()
    assert idle == []
    await second.close()
    await second.close()  # closing twice counts once
    assert idle == ["s"]
    assert await h.followers("s") == 0


async def test_finished_stream_does_not_call_on_idle() -> None:
    h = hub()
    idle: list[str] = []
    await h.create("s", on_idle=lambda: idle.append("s"))
    sub = await h.subscribe("s", -1)
    await h.append("s", b"end", last=True)
    await sub.close()
    assert idle == []


async def test_unknown_stream() -> None:
    with pytest.raises(StreamNotFound):
        await hub().subscribe("nope", -1)


async def test_finished_streams_expire_after_ttl() -> None:
    h = hub(ttl=0.05)
    await h.create("s", on_idle=lambda: None)
    await h.append("s", b"x", last=True)
    h.sweep()
    await h.subscribe("s", -1)
    await asyncio.sleep(0.06)
    h.sweep()
    with pytest.raises(StreamNotFound):
        await h.subscribe("s", -1)


async def test_retention_budget_evicts_oldest_finished_streams_only() -> None:
    h = hub(retain=10)
    for name in ("a", "b", "live"):
        await h.create(name, on_idle=lambda: None)
    await h.append("live", b"x" * 100)  # live streams are never evicted
    await h.append("a", b"123456", last=True)
    await h.append("b", b"123456", last=True)  # 12 bytes finished > 10: "a" goes
    with pytest.raises(StreamNotFound):
        await h.subscribe("a", -1)
    await h.subscribe("b", -1)
    await h.subscribe("live", -1)


async def test_sweeper_task_runs_in_background() -> None:
    h = hub(ttl=0.05)
    await h.start()
    try:
        await h.create("s", on_idle=lambda: None)
        await h.append("s", b"x", last=True)
        await asyncio.sleep(0.2)
        with pytest.raises(StreamNotFound):
            await h.subscribe("s", -1)
    finally:
        await h.close()
