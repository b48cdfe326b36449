"""The OpenAI-compatible API on the wire: SSE framing, error chunks, errors under `/v1`."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from streamchat.apis.openai_chat.protocol import ChatCompletion, ChatCompletionChunk, ErrorResponse

from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .sseclient import Frame, FrameReader

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def stream_frames(http: aiohttp.ClientSession, server: ServerProcess) -> list[Frame]:
    async with http.post(server.url + "/v1/chat/completions", json=BODY) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["X-Accel-Buffering"] == "no"
        return [f for f in await FrameReader(response).all() if not f.is_ping]


async def test_every_chunk_is_one_data_line_and_the_stream_ends_with_done(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    frames = await stream_frames(http, server)
    assert [len(f.lines) for f in frames] == [1] * len(frames)
    *chunks, done = frames
    assert done.raw == b"data: [DONE]"
    for frame in chunks:
        ChatCompletionChunk.model_validate(frame.event)
    assert [f.event["choices"][0]["finish_reason"] for f in chunks][-2:] == [None, "stop"]


async def test_failure_after_the_stream_began_is_an_error_chunk_then_done(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(error_after=3))
    *chunks, error, done = await stream_frames(http, server)
    assert [c.event["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hel", "lo", ","]
    assert ErrorResponse.model_validate(error.event).error.code == "upstream_error"
    assert error.event["error"]["type"] == "server_error"
    assert "upstream exploded" not in error.event["error"]["message"]
    await server.logged("upstream exploded")
    assert done.raw == b"data: [DONE]"


@pytest.mark.parametrize(
    ("method", "path", "data", "content_type", "status", "code"),
    [
        ("GET", "/v1/no-such-thing", None, None, 404, "unknown_url"),
        ("DELETE", "/v1/models", None, None, 405, "method_not_allowed"),
        (
            "POST",
            "/v1/chat/completions",
            b'{"messages": [',
            "application/json",
            400,
            "invalid_json",
        ),
        ("POST", "/v1/chat/completions", b"[1, 2]", "application/json", 400, "invalid_json"),
        ("POST", "/v1/chat/completions", b"{}", "text/plain", 415, "invalid_content_type"),
        (
            "POST",
            "/v1/chat/completions",
            b"{}",
            "application/json",
            400,
            "missing_required_parameter",
        ),
    ],
)
async def test_every_error_under_v1_has_openai_shape_in_english(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    method: str,
    path: str,
    data: bytes | None,
    content_type: str | None,
    status: int,
    code: str,
) -> None:
    headers = {"Accept-Language": "zh-CN"}
    if content_type:
        headers["Content-Type"] = content_type
    async with http.request(method, server.url + path, data=data, headers=headers) as response:
        assert response.status == status
        assert response.headers["Content-Type"] == "application/json"
        body = orjson.loads(await response.read())
    error = ErrorResponse.model_validate(body).error
    assert error.code == code
    assert error.message.isascii(), "OpenAI's clients show the message as it is"


async def test_native_paths_keep_the_envelope(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/api/no-such-thing") as response:
        assert response.status == 404
        assert await response.json() == {"code": 65, "message": "资源不存在", "data": None}
    async with http.get(server.url + "/v1x") as response:
        assert (await response.json())["code"] == 65, "only /v1 and below are OpenAI's"


async def test_openapi_documents_the_openai_api(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/api.json") as response:
        spec = await response.json()
    completions = spec["paths"]["/v1/chat/completions"]["post"]
    content = completions["responses"]["200"]["content"]
    assert content["text/event-stream"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionChunk"
    }
    assert {"ChatCompletion", "ChatCompletionChunk", "ErrorResponse"} <= spec["components"][
        "schemas"
    ].keys()
    assert "/v1/models" in spec["paths"]


async def test_model_may_be_left_out_for_the_default(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with http.post(server.url + "/v1/chat/completions", json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        completion = ChatCompletion.model_validate(await response.json())
    assert completion.model == "gpt-4o-mini"
    assert upstream.records[-1].body["model"] == "gpt-4o-mini"
