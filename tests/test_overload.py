"""Overload protection: a client that stops reading is dropped, and the number of streams
generating at once is bounded (STREAMCHAT_MAX_STREAMS) with 503 + Retry-After beyond it."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson

from streamchat.server.listeners import LISTENERS

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .sseclient import FrameReader, events

CHAT = {"uid": 3, "message": "a long answer, please"}
# Far more than socket buffers hold (the server's kernel send buffer grows to tcp_wmem's
# 4 MB), and still streaming long after the send deadline: 80 MB at 4 KB a millisecond.
FLOOD = Script(tokens=["x" * 4000] * 20_000, delay=0.001)


def server_owned_connections(server_port: int, client_port: int) -> list[str]:
    """TCP states of the sockets a process holds for the connection server_port<-client_port.

    From /proc/net/tcp: a socket no process holds any more (closed, or orphaned while the
    kernel finishes it) has inode 0 there.
    """
    states = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if (
            int(local.rsplit(":", 1)[1], 16) == server_port
            and int(remote.rsplit(":", 1)[1], 16) == client_port
            and inode != "0"
        ):
            states.append(state)
    return states


async def open_unread_stream(server: ServerProcess) -> socket.socket:
    """POST a chat on a raw socket with a tiny receive buffer, and never read from it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    body = orjson.dumps(CHAT)
    head = (
        f"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    await loop.sock_sendall(sock, head.encode() + body)
    return sock


async def wait_until_dropped(server: ServerProcess, client_port: int, seconds: float) -> None:
    for _ in range(int(seconds / 0.05)):
        if not server_owned_connections(server.port, client_port):
            return
        await asyncio.sleep(0.05)
    states = server_owned_connections(server.port, client_port)
    raise AssertionError(f"the server still holds the stuck client's connection: {states}")


async def test_client_that_stops_reading_is_dropped_and_its_generation_ends(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    server = await start_server(send_timeout_seconds="1", detach_grace_seconds="0")
    upstream.reset(FLOOD)
    sock = await open_unread_stream(server)
    try:
        client_port = sock.getsockname()[1]
        record = await upstream.next_record()
        assert server_owned_connections(server.port, client_port) == ["01"]  # established
        # The send deadline is 1 s; the upstream is closed when the last follower leaves.
        # The wait is generous (a loaded machine, 4 KB tokens saved as the answer grows):
        # what shows the drop is that the upstream was closed before its last token.
        await asyncio.wait_for(record.closed.wait(), timeout=40)
        assert len(record.token_times) < len(FLOOD.tokens)
        await wait_until_dropped(server, client_port, seconds=5)
        assert "did not read" in server.log()
    finally:
        sock.close()

    # The server is still healthy and answers the next chat in full.
    upstream.reset()
    async with http.get(server.url + "/healthz") as response:
        assert response.status == 200
    async with http.post(server.url + "/api/chat", json=CHAT) as response:
        got = events(await FrameReader(response).all())
    assert got[-1]["type"] == "end"
    assert "".join(e["delta"] for e in got if e["type"] == "delta") == "Hello, world!"


async def read_start(response: aiohttp.ClientResponse) -> tuple[FrameReader, str]:
    """Check a chat was accepted; its reader and stream id after the start event."""
    assert response.status == 200
    reader = FrameReader(response)
    start = await reader.next_event()
    assert start is not None
    assert start.event["type"] == "start"
    return reader, start.event["stream_id"]


async def assert_busy(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    headers = {"Accept-Language": "en"}
    async with http.post(server.url + "/api/chat", json=CHAT, headers=headers) as refused:
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "5"
        body = await refused.json()
    assert body == {"code": 63, "message": "server busy, retry later", "data": None}


async def test_streams_beyond_max_streams_get_503_with_retry_after_until_one_ends(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    server = await start_server(max_streams="2", detach_grace_seconds="0")
    upstream.reset(Script(tokens=[f"w{i} " for i in range(100)], delay=0.1))
    url = server.url + "/api/chat"
    async with http.post(url, json=CHAT) as first, http.post(url, json=CHAT) as second:
        first_reader, first_id = await read_start(first)
        await read_start(second)
        asked = len(upstream.records)

        await assert_busy(http, server)
        assert len(upstream.records) == asked, "a refused chat must not reach the upstream"

        # Cancelling the first stream ends it, and that frees its slot.
        async with http.post(f"{server.url}/api/chat/streams/{first_id}/cancel") as cancel:
            assert cancel.status == 200
        rest = events(await first_reader.all())
        assert rest[-1]["finish_reason"] == "cancelled"
        async with http.post(url, json=CHAT) as third:
            await read_start(third)
            await assert_busy(http, server)


async def test_a_chat_the_upstream_refuses_gives_its_slot_back(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    server = await start_server(max_streams="1", detach_grace_seconds="0")
    upstream.reset(Script(status=500))
    for _ in range(3):
        async with http.post(server.url + "/api/chat", json=CHAT) as response:
            assert response.status == 502
    upstream.reset()
    async with http.post(server.url + "/api/chat", json=CHAT) as response:
        got = events(await FrameReader(response).all())
    assert got[-1]["type"] == "end"


@contextlib.contextmanager
def lowered_open_file_limit() -> Iterator[None]:
    """Halve this process's soft open-file limit for a while: children started meanwhile
    inherit it, as a server started on a system with a low default would."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_file_limits(pid: int) -> tuple[str, str]:
    """The soft and hard open-file limits of a process."""
    limits = Path(f"/proc/{pid}/limits").read_text()
    soft, hard = next(line for line in limits.splitlines() if "open files" in line).split()[3:5]
    return soft, hard


def kernel_somaxconn() -> int:
    """The kernel's cap on a listening socket's backlog."""
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


def listen_backlogs(port: int) -> list[int]:
    """The accept-queue bound of each socket listening on `port` (ss shows it as Send-Q)."""
    shown = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [int(line.split()[2]) for line in shown]


async def test_serve_raises_its_open_file_limit_and_listens_with_deep_backlogs(
    upstream: FakeUpstream,
) -> None:
    server = ServerProcess(
        {"STREAMCHAT_PROVIDER": "openai", "STREAMCHAT_OPENAI_BASE_URL": upstream.base_url}
    )
    with lowered_open_file_limit():
        await server.start()
    try:
        assert server.proc is not None
        soft, hard = open_file_limits(server.proc.pid)
        assert soft == hard
        # One socket accepts one connection per loop iteration: the server listens on several
        # (SO_REUSEPORT). uvicorn's default backlog (2048) overflowed at C=5000; the kernel
        # caps ours.
        assert listen_backlogs(server.port) == [min(65535, kernel_somaxconn())] * LISTENERS
    finally:
        server.stop()
