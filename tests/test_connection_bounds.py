"""Slow and silent clients cannot hold connections for ever (issue 23, item 3), with real
sockets: a request head has STREAMCHAT_HEAD_TIMEOUT_SECONDS to arrive, an idle keep-alive
connection STREAMCHAT_KEEPALIVE_TIMEOUT_SECONDS, and one address may hold
STREAMCHAT_MAX_CONNECTIONS_PER_ADDRESS connections; `/healthz` answers throughout."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp

from .conftest import StartServer
from .servers import ServerProcess

HEAD_TIMEOUT = 1.0


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection (EOF or reset), failing after `seconds`."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close our end and wait for it, so that no transport is left for the collector."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _healthz(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    async with http.get(server.url + "/healthz") as health:
        assert health.status == 200


async def test_silent_sockets_and_slow_header_lines_are_closed(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(
        provider="echo", head_timeout_seconds=str(HEAD_TIMEOUT), max_connections_per_address="0"
    )
    silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(50)]
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", server.port)
    slow_writer.write(b"GET /hello HTTP/1.1\r\n")

    async def drip() -> None:  # one header line every 0.3 s, never the end of the head
        for i in range(100):
            await asyncio.sleep(0.3)
            if slow_writer.is_closing():
                return
            slow_writer.write(b"X-Drip-%d: x\r\n" % i)
            try:
                await slow_writer.drain()
            except ConnectionError:
                return

    dripping = asyncio.create_task(drip())
    try:
        await _healthz(http, server)
        waited = await asyncio.gather(*(_closed_within(r, 5) for r, _ in silent))
        assert max(waited) < HEAD_TIMEOUT + 2, waited
        assert await _closed_within(slow_reader, 5) < HEAD_TIMEOUT + 2
        await _healthz(http, server)
    finally:
        dripping.cancel()
        for _, writer in [*silent, (slow_reader, slow_writer)]:
            await _close(writer)


async def test_an_idle_keep_alive_connection_is_closed_and_a_new_head_is_timed(
    start_server: StartServer,
) -> None:
    server = await start_server(
        provider="echo",
        head_timeout_seconds=str(HEAD_TIMEOUT),
        keepalive_timeout_seconds="1",
        max_connections_per_address="0",
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        assert (await reader.readuntil(b"Hello World!")).startswith(b"HTTP/1.1 200")
        assert await _closed_within(reader, 5) < 3  # idle after its answer
    finally:
        await _close(writer)
    # After an answer, the next head has the same time to arrive.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        await reader.readuntil(b"Hello World!")
        writer.write(b"GET /hello HTTP/1.1\r\n")  # begun within the keep-alive time, not ended
        assert await _closed_within(reader, 5) < HEAD_TIMEOUT + 2
    finally:
        await _close(writer)


async def test_one_address_holds_at_most_its_share_of_connections(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", max_connections_per_address="5")
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(5)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed unanswered
        await _close(writer)
    finally:
        for _, holder in held:
            await _close(holder)
    await asyncio.sleep(0.2)  # the server notices they are gone
    await _healthz(http, server)  # a place is free again


async def test_a_body_that_stops_arriving_is_closed(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", body_timeout_seconds="1")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            (
                f"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                '{"uid": 1, '
            ).encode()
        )
        waited = await _closed_within(reader, 5)
        assert 0.5 < waited < 3, waited
    finally:
        await _close(writer)
    await _healthz(http, server)
