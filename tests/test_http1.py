"""The upstream's HTTP/1.1 client (providers/http1.py) against real sockets: a small server
here answers each request with the bytes a test scripts, and counts its connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from streamchat.providers.http1 import ConnectFailure, HTTPFailure, Upstream

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """Accepts connections; each request's answer is written by `answer`."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.answer: Answer = ok_chunked
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                await self.answer(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def ok_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for part in (b"data: 1\n\n", b"data: 2\n\n"):
        writer.write(b"%x\r\n%b\r\n" % (len(part), part))
    writer.write(b"0\r\n\r\n")
    await writer.drain()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    await s.start()
    yield s
    await s.close()


_made: list[Upstream] = []


def client(url: str, **options: int) -> Upstream:
    upstream = Upstream(
        url, headers={"Content-Type": "application/json"}, connect_timeout=5, **options
    )
    _made.append(upstream)
    return upstream


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _made:
        _made.pop().close()
    await asyncio.sleep(0)  # the transports' close callbacks


async def body_of(upstream: Upstream) -> bytes:
    response = await upstream.post(b"{}")
    data = b"".join([part async for part in response.reads()])
    response.release()
    return data


async def test_a_request_is_one_post_with_its_length_and_the_answer_is_read_whole(
    server: Server,
) -> None:
    upstream = client(server.url)
    assert await body_of(upstream) == b"data: 1\n\ndata: 2\n\n"
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 2\r\n\r\n{}" in request
    assert b"\r\nContent-Type: application/json\r\n" in request


async def test_a_connection_read_to_its_end_is_kept_for_the_next_request(server: Server) -> None:
    upstream = client(server.url)
    for _ in range(3):
        await body_of(upstream)
    assert server.connections == 1


async def test_a_kept_connection_the_server_closed_is_replaced_not_failed(server: Server) -> None:
    async def once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ok_chunked(reader, writer)
        await asyncio.sleep(0.05)
        writer.close()  # after the answer, as a server's idle timeout does

    server.answer = once_then_close
    upstream = client(server.url)
    await body_of(upstream)
    await asyncio.sleep(0.2)
    assert await body_of(upstream) == b"data: 1\n\ndata: 2\n\n"
    assert server.connections == 2


async def test_an_answer_closed_early_closes_its_connection(server: Server) -> None:
    upstream = client(server.url)
    response = await upstream.post(b"{}")
    response.close()
    await body_of(upstream)
    assert server.connections == 2


async def test_nothing_listening_is_a_connect_failure_with_the_systems_reason() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(ConnectFailure) as failure:
        await client(f"http://127.0.0.1:{port}/x").post(b"{}")
    assert "refused" in failure.value.reason.lower()


async def test_a_body_with_a_length_and_one_that_ends_with_the_connection(server: Server) -> None:
    async def with_length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 429 Slow down\r\nContent-Length: 11\r\n\r\n{"e":"slow"}')
        await writer.drain()

    server.answer = with_length
    upstream = client(server.url)
    response = await upstream.post(b"{}")
    assert response.status == 429
    assert await response.read(5) == b'{"e":'
    response.close()

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\ndata: all\n\n")
        await writer.drain()
        writer.close()

    server.answer = until_close
    assert await body_of(upstream) == b"data: all\n\n"


async def test_a_connection_lost_mid_answer_fails_the_read(server: Server) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
        await writer.drain()
        writer.close()

    server.answer = cut
    response = await client(server.url).post(b"{}")
    parts: list[bytes] = []

    async def read_all() -> None:
        async for part in response.reads():
            parts.append(part)

    with pytest.raises(HTTPFailure, match="closed before the answer ended"):
        await read_all()
    assert parts == [b"data: 1\n\n"]  # what came before the cut is read first


async def test_an_answer_that_is_not_http_is_a_failure(server: Server) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    server.answer = garbage
    with pytest.raises(HTTPFailure, match="invalid HTTP"):
        await client(server.url).post(b"{}")


async def test_an_unread_answer_stops_the_socket_reads_and_loses_nothing(server: Server) -> None:
    part = b"data: " + b"x" * 4000 + b"\n\n"
    count = 200  # 800 KB, past the bound on bytes held unread

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(count):
            writer.write(b"%x\r\n%b\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server.answer = big
    response = await client(server.url).post(b"{}")
    await asyncio.sleep(0.3)  # the server writes while nobody reads
    # Held unread: at most the bound and the read that passed it, not the whole answer.
    assert response._size <= 64 * 1024 + 256 * 1024 < len(part) * count
    received = b"".join([data async for data in response.reads()])
    assert received == part * count


async def test_max_connections_makes_a_request_wait_for_a_free_one(server: Server) -> None:
    upstream = client(server.url, max_connections=1)
    first = await upstream.post(b"{}")
    second = asyncio.ensure_future(upstream.post(b"{}"))
    await asyncio.sleep(0.2)
    assert not second.done()
    [_ async for _ in first.reads()]
    first.release()
    response = await asyncio.wait_for(second, 5)
    response.close()
    assert server.connections == 1


async def test_tls_to_a_server_that_speaks_none_fails_to_connect(server: Server) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server.answer = silent
    https = server.url.replace("http://", "https://")
    with pytest.raises((ConnectFailure, TimeoutError)):
        await Upstream(https, headers={}, connect_timeout=1).post(b"{}")


async def test_an_endless_head_is_refused_not_held(server: Server) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
        for _ in range(200):  # 1.6 MB of one header line, never ended
            writer.write(b"a" * 8192)
            await writer.drain()

    server.answer = endless
    with pytest.raises(HTTPFailure, match="head over"):
        await client(server.url).post(b"{}")
