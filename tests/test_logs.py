"""STREAMCHAT_LOG_FORMAT=json: one JSON object a line, and the access line of DESIGN.md §9."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .sseclient import FrameReader, events


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line of the server's log, each parsed as a JSON object (failing on any other)."""
    parsed = []
    for line in server.log().splitlines():
        if line.strip():
            entry = orjson.loads(line)
            assert isinstance(entry, dict), line
            parsed.append(entry)
    return parsed


async def access_line(server: ServerProcess, trace_id: str) -> dict[str, Any]:
    """The access line of the request `trace_id` (written once its response has ended)."""
    deadline = time.monotonic() + 10
    while True:
        for entry in json_lines(server):
            if entry["logger"] == "streamchat.access" and entry["trace_id"] == trace_id:
                return entry
        assert time.monotonic() < deadline, server.log()
        await asyncio.sleep(0.05)


async def test_json_logs_parse_line_by_line_with_the_request_line(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    server = await start_server(log_format="json")
    upstream.reset(Script(tokens=["a", "b", "c", "d"]))
    async with http.post(server.url + "/api/chat", json={"uid": 9, "message": "hi"}) as response:
        assert response.status == 200
        trace_id = response.headers["Trace-Id"]
        got = events(await FrameReader(response).all())
    assert got[-1]["type"] == "end"
    line = await access_line(server, trace_id)
    assert line["level"] == "INFO"
    assert line["method"] == "POST"
    assert line["path"] == "/api/chat"
    assert line["status"] == 200
    assert line["tokens"] == 4
    assert line["ttft_ms"] is not None
    assert line["ttft_ms"] <= line["duration_ms"]
    assert line["uid"] == "-"  # auth off: no key, no principal
    assert line["key_prefix"] == "-"
    startup = [e for e in json_lines(server) if "Application startup complete" in e["message"]]
    assert startup


async def raw_get(server: ServerProcess, target: bytes, user_agent: bytes) -> str:
    """A GET written byte by byte (HTTP clients refuse control characters in headers); the
    response's trace id."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            b"GET %b HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: %b\r\nConnection: close\r\n\r\n"
            % (target, user_agent)
        )
        head = (await reader.read()).split(b"\r\n\r\n")[0].decode("latin-1")
    finally:
        writer.close()
    for header in head.split("\r\n")[1:]:
        name, _, text = header.partition(":")
        if name.lower() == "trace-id":
            return text.strip()
    raise AssertionError(head)


async def test_control_characters_from_the_client_are_escaped(
    start_server: StartServer,
) -> None:
    server = await start_server(log_format="json")
    trace_id = await raw_get(server, b"/hello%0Afake%0D%E2%80%A8line", b"evil\x9b31m\tagent")
    line = await access_line(server, trace_id)
    assert line["path"] == "/hello\\x0afake\\x0d\\u2028line"
    # httptools refuses C0 controls but tabs in a header; bytes above 0x7f (obs-text) pass,
    # and latin-1 reads 0x80-0x9f as C1 controls (0x9b is a terminal's CSI).
    assert line["user_agent"] == "evil\\x9b31m\\x09agent"
    assert line["status"] == 404


async def test_text_logs_escape_the_path_too(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/nothing%0A2026-01-01 [INFO] forged") as response:
        trace_id = response.headers["Trace-Id"]
    deadline = time.monotonic() + 10
    while trace_id not in server.log():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    line = next(line for line in server.log().splitlines() if trace_id in line)
    assert "/nothing\\x0a2026-01-01 [INFO] forged" in line
    assert not any(
        line.startswith("2026-01-01 [INFO] forged") for line in server.log().splitlines()
    )
