"""Bounds at the edge (DESIGN §8), against a real server: each a 4xx in its API's shape."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import aiohttp
import pytest

from streamchat.apis.openai_chat.protocol import ErrorResponse

from .conftest import StartServer
from .fakeupstream import FakeUpstream
from .servers import ServerProcess
from .sseclient import FrameReader

MB = 1024 * 1024
MAX_BODY = MB  # STREAMCHAT_MAX_BODY_BYTES's default
MAX_HEAD = 16 * 1024  # STREAMCHAT_MAX_HEADER_BYTES's default
CHAT = {"uid": 1, "message": "hi"}
HELLO = {"messages": [{"role": "user", "content": "hi"}]}


async def raw_exchange(server: ServerProcess, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send `head` (and `body`) on a socket of its own; the status and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        match = re.search(rb"content-length: (\d+)", headers, re.IGNORECASE)
        assert match is not None, headers
        answer = await asyncio.wait_for(reader.readexactly(int(match.group(1))), 10)
        return int(status_line.split()[1]), answer
    finally:
        writer.close()


def native_code(body: bytes) -> int:
    """The envelope's code (and that the body is the envelope)."""
    envelope = json.loads(body)
    assert set(envelope) == {"code", "message", "data"}
    assert envelope["data"] is None
    assert envelope["message"]
    code: int = envelope["code"]
    return code


def openai_code(body: bytes) -> str | None:
    """OpenAI's error `code` (and that the body is OpenAI's error shape)."""
    return ErrorResponse.model_validate_json(body).error.code


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions", "/api/conversations"])
async def test_a_declared_body_over_the_bound_is_413_before_a_byte_is_read(
    server: ServerProcess, path: str
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    status, body = await raw_exchange(server, head)  # no body sent at all
    assert status == 413
    assert time.monotonic() - started < 5
    if path.startswith("/v1"):
        assert openai_code(body) == "request_too_large"
    else:
        assert native_code(body) == 66
        assert str(MAX_BODY) in json.loads(body)["message"]


async def send_while_reading(
    server: ServerProcess, head: bytes, total: int, *, chunked: bool, whole: bool = False
) -> tuple[int, bytes]:
    """Send `head`, then up to `total` bytes of body (1 MiB blocks, chunked or not) as fast
    as the server takes them, stopping when it answers (unless `whole`) or closes; its
    status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    answer = asyncio.create_task(read_answer(reader))
    block = b"a" * MB
    writer.write(head)
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < total and (whole or not answer.done()):
            writer.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            await writer.drain()
            sent += len(block)
        if chunked and sent >= total:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    try:
        return await asyncio.wait_for(answer, 10)
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of an HTTP answer with a Content-Length."""
    status_line = await reader.readline()
    headers = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"content-length: (\d+)", headers, re.IGNORECASE)
    assert match is not None, headers
    return int(status_line.split()[1]), await reader.readexactly(int(match.group(1)))


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_a_chunked_body_over_the_bound_is_413(server: ServerProcess, path: str) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    status, body = await send_while_reading(server, head, 4 * MAX_BODY, chunked=True)
    assert status == 413
    if path.startswith("/v1"):
        assert openai_code(body) == "request_too_large"
    else:
        assert native_code(body) == 66


async def test_the_body_bound_holds_when_fastapi_serves_the_stream_routes(
    start_server: StartServer,
) -> None:
    # FastAPI turns an error of `receive` into its own 400: the bound's 413 must win.
    through_fastapi = await start_server(direct_routes="false")
    for path in ("/api/chat", "/v1/chat/completions"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        status, _ = await send_while_reading(through_fastapi, head, 4 * MAX_BODY, chunked=True)
        assert status == 413, path


async def test_the_largest_v1_conversation_fits_the_body_bound(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    # 128,000 characters (STREAMCHAT_MAX_CONVERSATION_CHARS) of Chinese, each message at
    # STREAMCHAT_MAX_MESSAGE_CHARS, written as \\u escapes: the bulkiest JSON of valid text.
    messages = [{"role": "user", "content": "中" * 32_000} for _ in range(4)]
    data = json.dumps({"messages": messages}, ensure_ascii=True).encode()
    assert len(data) > 750_000
    headers = {"Content-Type": "application/json"}
    async with http.post(server.url + "/v1/chat/completions", data=data, headers=headers) as r:
        assert r.status == 200, await r.text()
        await r.read()


@pytest.mark.parametrize("path", ["/api/conversations?uid=1", "/v1/models"])
async def test_a_head_over_the_bound_is_431(server: ServerProcess, path: str) -> None:
    padding = "x" * (MAX_HEAD + 1)
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {padding}\r\n\r\n".encode()
    status, body = await raw_exchange(server, head)
    assert status == 431
    if path.startswith("/v1"):
        assert openai_code(body) == "request_header_fields_too_large"
    else:
        assert native_code(body) == 66


async def test_many_small_headers_and_a_long_target_count_too(server: ServerProcess) -> None:
    headers = "".join(f"X-H{i}: {'v' * 50}\r\n" for i in range(400))
    status, _ = await raw_exchange(server, f"GET /hello HTTP/1.1\r\n{headers}\r\n".encode())
    assert status == 431
    target = "/hello?q=" + "a" * (MAX_HEAD + 1)
    status, _ = await raw_exchange(
        server, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    )
    assert status == 431
    status, body = await raw_exchange(server, b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (status, body) == (200, b"Hello World!"), "the server goes on serving"


NATIVE_INTEGERS: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = [
    # method, path, JSON body, headers
    ("POST", "/api/chat", {"uid": 2**63, "message": "hi"}, {}),
    ("POST", "/api/chat", {"uid": 2**53, "message": "hi"}, {}),
    ("POST", "/api/chat", {"uid": 10**400, "message": "hi"}, {}),
    ("GET", f"/api/conversations?uid={2**63}", None, {}),
    ("GET", f"/api/conversations?uid={10**30}", None, {}),
    ("GET", f"/api/conversations?uid=1&cursor={'9' * 20}_{'a' * 32}", None, {}),
    ("GET", f"/api/conversations?uid=1&limit={2**64}", None, {}),
    ("GET", f"/api/conversations/{'a' * 32}/messages?uid={2**63}", None, {}),
    ("DELETE", f"/api/conversations/{'a' * 32}?uid={2**63}", None, {}),
    ("GET", f"/api/chat/streams/{'a' * 32}?after={2**63}", None, {}),
    ("GET", f"/api/chat/streams/{'a' * 32}?after=-2", None, {}),
    ("GET", f"/api/chat/streams/{'a' * 32}", None, {"Last-Event-ID": str(2**63)}),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), NATIVE_INTEGERS)
async def test_every_native_integer_is_bounded(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    upstream: FakeUpstream,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> None:
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers = {**headers, "Content-Type": "application/json"}
    async with http.request(method, server.url + path, data=data, headers=headers) as response:
        assert response.status == 400, await response.text()
        assert native_code(await response.read()) == 51
    assert upstream.records == []


async def test_the_largest_uid_is_served(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    uid = 2**53 - 1
    async with http.post(server.url + "/api/chat", json={"uid": uid, "message": "hi"}) as r:
        assert r.status == 200
        frames = await FrameReader(r).all()
    assert frames[-1].event["type"] == "end"
    async with http.get(f"{server.url}/api/conversations?uid={uid}") as r:
        assert r.status == 200
        assert len((await r.json())["data"]["items"]) == 1


V1_BOUNDS: list[tuple[dict[str, Any], int, str, str | None]] = [
    # body (besides messages), status, code, param
    ({"seed": 2**64}, 400, "invalid_value", "seed"),
    ({"seed": -(2**63) - 1}, 400, "invalid_value", "seed"),
    ({"max_tokens": 2**31}, 400, "invalid_value", "max_tokens"),
    ({"max_tokens": 32_769}, 400, "invalid_value", "max_tokens"),
    ({"max_completion_tokens": 32_769}, 400, "invalid_value", "max_tokens"),
    ({"max_tokens": 10**30}, 400, "invalid_value", "max_tokens"),
    ({"n": 2**64}, 400, "invalid_value", "n"),
    ({"n": 2}, 400, "unsupported_parameter", "n"),
    ({"top_logprobs": 2**70}, 400, "invalid_value", "top_logprobs"),
    ({"top_p": 1e308}, 400, "invalid_value", "top_p"),
    # Forwarded unread to an upstream, still JSON any upstream reads (no 500 from encoding it).
    ({"top_k": 2**70}, 400, "invalid_value", "top_k"),
    ({"vendor": {"a": [1, -(2**64)]}}, 400, "invalid_value", "vendor.a.1"),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "w": 2**65}]}]},
        400,
        "invalid_value",
        "messages.0.content.0.w",
    ),
    ({"temperature": -1}, 400, "invalid_value", "temperature"),
    (
        {"messages": [{"role": "user", "content": "x"}] * 257},
        400,
        "array_above_max_length",
        "messages",
    ),
    (
        {
            "messages": [{"role": "user", "content": "x" * 32_000}] * 4
            + [{"role": "user", "content": "y"}]
        },
        413,
        "string_above_max_length",
        "messages",
    ),
]


@pytest.mark.parametrize(("extra", "status", "code", "param"), V1_BOUNDS)
async def test_every_v1_bound(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    upstream: FakeUpstream,
    extra: dict[str, Any],
    status: int,
    code: str,
    param: str | None,
) -> None:
    async with http.post(server.url + "/v1/chat/completions", json={**HELLO, **extra}) as response:
        assert response.status == status, await response.text()
        error = ErrorResponse.model_validate_json(await response.read()).error
    assert (error.code, error.param) == (code, param)
    assert upstream.records == []


async def test_an_infinite_number_anywhere_is_a_400_naming_it(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    body = b'{"messages":[{"role":"user","content":"x"}],"min_p":{"deep":[1e999]}}'
    headers = {"Content-Type": "application/json"}
    async with http.post(server.url + "/v1/chat/completions", data=body, headers=headers) as r:
        assert r.status == 400, await r.text()
        error = ErrorResponse.model_validate_json(await r.read()).error
    assert (error.code, error.param) == ("invalid_value", "min_p.deep.0")
    assert upstream.records == []


async def test_the_largest_seed_and_token_limit_are_served(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    body = {**HELLO, "seed": 2**63 - 1, "max_tokens": 32_768}
    async with http.post(server.url + "/v1/chat/completions", json=body) as response:
        assert response.status == 200
    assert upstream.records[-1].body["seed"] == 2**63 - 1


async def test_a_resume_far_past_the_end_costs_nothing(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.post(server.url + "/api/chat", json=CHAT) as response:
        frames = await FrameReader(response).all()
    stream_id = frames[0].event["stream_id"]
    started = time.monotonic()
    url = f"{server.url}/api/chat/streams/{stream_id}?after={2**53 - 1}"
    async with http.get(url) as response:
        assert response.status == 200
        again = await FrameReader(response).all()
    # Only the stream's final event again (issue 28), at once, whatever `after` says.
    assert [frame.event for frame in again] == [frames[-1].event]
    assert time.monotonic() - started < 2


async def test_a_line_break_in_the_path_cannot_forge_a_log_line(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    forged = "FORGED [ERROR] {trace} streamchat: owned"
    path = "/nothing%0D%0A" + forged.replace(" ", "%20") + "%E2%80%A8x%00"
    async with http.get(server.url + path) as response:
        assert response.status == 404
        trace_id = response.headers["trace-id"]
    line = await server.logged(trace_id, "FORGED")
    assert "\\x0d\\x0aFORGED" in line
    assert "\\u2028x\\x00" in line
    assert not any(text.startswith("FORGED") for text in server.log().splitlines())


async def test_a_header_that_never_ends_is_431_and_not_kept(server: ServerProcess) -> None:
    # httptools holds an unfinished header back from its callbacks: it is counted as it
    # arrives, not only when complete.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        status_line = b""
        for _ in range(64):  # 64 x 4 KiB, far past the bound, never a CRLF
            writer.write(b"a" * 4096)
            await writer.drain()
            try:
                status_line = await asyncio.wait_for(reader.readline(), 0.05)
            except TimeoutError:
                continue
            if status_line:
                break
        assert status_line.split()[1:2] == [b"431"], status_line
    finally:
        writer.close()
    status, body = await raw_exchange(server, b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (status, body) == (200, b"Hello World!")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [2**70]}, None),  # not an item: the request's own check
        ({"input": "x", "tools": [{"type": "function", "name": "f", "parameters": {"x": 2**70}}]},
         "tools.0.parameters.x"),
        ({"input": "x", "vendor": -(2**64)}, "vendor"),
    ],
)  # fmt: skip
async def test_a_responses_body_an_upstream_could_not_read_is_a_400(
    http: aiohttp.ClientSession,
    server: ServerProcess,
    upstream: FakeUpstream,
    body: dict[str, Any],
    param: str | None,
) -> None:
    async with http.post(server.url + "/v1/responses", json=body) as response:
        assert response.status == 400, await response.text()
        error = ErrorResponse.model_validate_json(await response.read()).error
    if param is not None:
        assert (error.code, error.param) == ("invalid_value", param)
    assert upstream.records == []
