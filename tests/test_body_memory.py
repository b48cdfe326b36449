"""Refusing a huge body costs the server no memory: its RSS grows by less than 10 MB."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .conftest import StartServer
from .servers import ServerProcess
from .test_bounds import send_while_reading

MB = 1024 * 1024


def rss(server: ServerProcess) -> int:
    """The server process's resident set, in bytes."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def peak_growth(server: ServerProcess, head: bytes, total: int, chunked: bool) -> int:
    """How much the server's RSS grew, at most, while refusing the body."""
    baseline = rss(server)
    peak = baseline
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss(server))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    try:
        status, _ = await send_while_reading(server, head, total, chunked=chunked, whole=True)
    finally:
        done.set()
        await sampler
    await asyncio.sleep(0.2)
    peak = max(peak, rss(server))
    assert status == 413
    return peak - baseline


@pytest.fixture
async def quiet_server(start_server: StartServer) -> ServerProcess:
    """A server of this test's own: no other test's requests move its memory."""
    return await start_server(ping_seconds="3", detach_grace_seconds="0")


@pytest.mark.parametrize(
    ("declared", "chunked", "total"),
    [(200 * MB, False, 200 * MB), (None, True, 64 * MB)],
    ids=["content-length-200MB", "chunked-64MB"],
)
async def test_a_huge_body_is_refused_without_growing_the_server(
    quiet_server: ServerProcess, declared: int | None, chunked: bool, total: int
) -> None:
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared}"
    for path in ("/api/chat", "/v1/chat/completions"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\n{length}\r\n\r\n"
        ).encode()
        await peak_growth(quiet_server, head, 2 * MB, chunked)  # warm: imports, buffers
        growth = await peak_growth(quiet_server, head, total, chunked)
        print(f"{path} {length}: RSS grew by {growth / MB:.1f} MB")
        assert growth < 10 * MB, f"{path}: RSS grew by {growth / MB:.1f} MB"
