"""A lone surrogate in a JSON body is a 400 on every path (issue 23, item 7), also with
STREAMCHAT_DIRECT_ROUTES=false, where FastAPI's `json.loads` used to let it through to a 503."""

from __future__ import annotations

import aiohttp
import pytest

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .sseclient import FrameReader, events

JSON = {"Content-Type": "application/json"}
BODIES = {
    "/api/chat": b'{"uid": 1, "message": "hi \\ud800 there"}',
    "/v1/chat/completions": (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a\\udfffb"}]}'
    ),
}


@pytest.mark.parametrize("direct", ["true", "false"])
@pytest.mark.parametrize("path", list(BODIES))
async def test_a_lone_surrogate_is_a_400(
    http: aiohttp.ClientSession, start_server: StartServer, direct: str, path: str
) -> None:
    server = await start_server(direct_routes=direct)
    async with http.post(server.url + path, data=BODIES[path], headers=JSON) as response:
        assert response.status == 400, await response.text()
        if path.startswith("/v1"):
            assert (await response.json())["error"]["type"] == "invalid_request_error"
        else:
            assert (await response.json())["code"] in (51, 66)


async def test_a_surrogate_pair_is_a_character(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    server = await start_server(direct_routes="false")
    upstream.reset(Script(tokens=["ok"]))
    body = b'{"uid": 1, "message": "smile \\ud83d\\ude00 and a \\\\ud800 that is text"}'
    async with http.post(server.url + "/api/chat", data=body, headers=JSON) as response:
        assert response.status == 200
        assert events(await FrameReader(response).all())[-1]["type"] == "end"
    sent = upstream.records[-1].body["messages"][-1]["content"]
    assert sent == "smile \U0001f600 and a \\ud800 that is text"
