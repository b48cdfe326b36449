"""Each owner gets a share of the replay budget (issue 23, item 7): one uid's many large
answers push out only its own older streams, not another uid's within its time to live."""

from __future__ import annotations

import aiohttp

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .sseclient import FrameReader, events


async def _answer(http: aiohttp.ClientSession, url: str, uid: int) -> str:
    async with http.post(url + "/api/chat", json={"uid": uid, "message": "m"}) as response:
        assert response.status == 200
        got = events(await FrameReader(response).all())
    assert got[-1]["type"] == "end"
    return str(got[0]["stream_id"])


async def test_one_owners_large_answers_leave_anothers_stream_replayable(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    server = await start_server(
        stream_retain_bytes=str(200_000), stream_retain_bytes_per_owner=str(50_000)
    )
    upstream.reset(Script(tokens=["small ", "answer"]))
    theirs = await _answer(http, server.url, 71)
    upstream.reset(Script(tokens=["x" * 100 for _ in range(100)]))  # about 16 KB a stream
    mine = [await _answer(http, server.url, 72) for _ in range(30)]  # 480 KB in all
    async with http.get(f"{server.url}/api/chat/streams/{theirs}?uid=71") as replay:
        assert replay.status == 200
        got = events(await FrameReader(replay).all())
        assert "".join(e.get("delta", "") for e in got) == "small answer"
    # The heavy owner keeps its latest ones, within its share; its oldest are gone.
    async with http.get(f"{server.url}/api/chat/streams/{mine[-1]}?uid=72") as latest:
        assert latest.status == 200
        await latest.read()
    async with http.get(f"{server.url}/api/chat/streams/{mine[0]}?uid=72") as oldest:
        assert oldest.status == 404
