"""A small HTTP/1.1 client for one upstream: POST a request, read its answer as it arrives.

Why not aiohttp, which this replaced for the upstream's answers: an upstream sends every SSE
event as an HTTP chunk of its own, and aiohttp's stream reader ran Python code several
times per chunk (the chunk's boundary, then a resume of the protocol that re-ran its parser
on no data, on every read); in the C=64 burst benchmark that was a quarter of the server's
time, and the request itself (aiohttp's session machinery) another twentieth. Here the
parsing is httptools' (llhttp, the C parser uvicorn serves with); a read hands over every
body byte that arrived since the last one, once per socket read, whatever its chunks; and
the request is one write of bytes prepared once.

What it does: keep-alive connections in a pool (at most `max_connections` at once, 0 for
no bound), TLS with the system's certificates for https, `Content-Length` and chunked
answers and answers that end with the connection, a bound on the body bytes held unread
(reading the socket pauses past it). What it does not: redirects, proxies, compression
(it asks for none), HTTP/2.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

# Bytes of an answer's status line and headers: past it the answer is refused (the parser
# keeps an unfinished header line whole, so an upstream's endless line would grow forever).
_MAX_HEAD = 64 * 1024

# Body bytes received and not yet taken before the socket stops being read. Past it the
# upstream's bytes wait in the kernel's socket buffer, not in this process: at C=5000 on a
# saturated core, 256 KB here was 73 KB of resident memory per open stream.
_HIGH_WATER = 64 * 1024


class HTTPFailure(Exception):
    """The connection or the answer broke; the message says how."""


class ConnectFailure(HTTPFailure):
    """No connection could be made; `reason` is the system's words for why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; bytes go to the answer being read on it, if any."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not subclasses of asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.response is not None:
            self.response.feed(data)
        elif self.transport is not None:
            self.transport.close()  # bytes on an idle connection: it is no longer ours

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response.lost(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """An answer being read: its status and headers once `Upstream.post` returns, then its
    body through `reads()` or `read()`. End it with `release()` or `close()`."""

    def __init__(self, connection: _Connection, pool: Upstream) -> None:
        self._connection = connection
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received = False  # any byte of the answer came
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._keep_alive = False
        self._until_close = False  # the body ends with the connection
        self._error: BaseException | None = None
        self._paused = False
        self._ended = False

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        names = {name for name, _ in self.headers}
        self._until_close = (
            b"content-length" not in names
            and b"transfer-encoding" not in names
            and self.status >= 200
            and self.status not in (204, 304)
        )
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._size += len(body)

    def on_message_complete(self) -> None:
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()

    # from the connection
    def feed(self, data: bytes) -> None:
        """Bytes from the socket."""
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(HTTPFailure(f"invalid HTTP ({exc})"))
            self._connection.close()
            return
        if not self.head.done():
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD:
                self.fail(HTTPFailure(f"an answer's head over {_MAX_HEAD} bytes"))
                self._connection.close()
                return
        transport = self._connection.transport
        if self._size > _HIGH_WATER and not self._paused and transport is not None:
            self._paused = True
            transport.pause_reading()
        self._wake()

    def lost(self, exc: Exception | None) -> None:
        """The connection closed."""
        if self._complete:
            return
        if exc is None and self._until_close and self.head.done():
            self._complete = True
            self._wake()
            return
        reason = "closed before the answer ended" if exc is None else f"broke ({exc})"
        self.fail(HTTPFailure(f"the connection {reason}"))

    def fail(self, exc: BaseException) -> None:
        """Make the wait for the head, or the next read, raise `exc`."""
        if self._error is None:
            self._error = exc
        if not self.head.done():
            self.head.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # for the reader
    async def reads(self) -> AsyncIterator[bytes]:
        """The body, as it arrives: each item is every byte that came since the last."""
        while (data := await self._take()) is not None:
            yield data

    async def read(self, limit: int) -> bytes:
        """Up to `limit` bytes of the body (an error's, say), waiting for them."""
        parts: list[bytes] = []
        size = 0
        while size < limit and (data := await self._take()) is not None:
            parts.append(data)
            size += len(data)
        return b"".join(parts)[:limit]

    async def _take(self) -> bytes | None:
        """What has come, waiting for some if nothing has; None at the end of the body."""
        while not self._body:
            if self._error is not None:
                raise self._error
            if self._complete:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        body = self._body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            if self._connection.transport is not None:
                self._connection.transport.resume_reading()
        return data

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if it was read to its
        end and may be kept, else it is closed."""
        reusable = self._complete and self._keep_alive and self._error is None
        self._end(reusable)

    def close(self) -> None:
        """Close the connection now (the upstream sees the answer abandoned)."""
        self._end(False)

    def _end(self, reusable: bool) -> None:
        if self._ended:
            return
        self._ended = True
        self._connection.response = None
        self._pool.finished(self._connection, reusable)


class Upstream:
    """POSTs to one URL over a pool of kept-alive connections."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str],
        connect_timeout: float,
        max_connections: int = 0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(max_connections) if max_connections > 0 else None
        self._idle: list[_Connection] = []

    async def post(self, body: bytes) -> Response:
        """Send `body`; return once the answer's status and headers have come.

        Raises `ConnectFailure`, `HTTPFailure`, or TimeoutError (connecting took longer than
        the connect timeout). A kept-alive connection that the server had closed meanwhile
        is dropped and the request sent again on another.
        """
        while True:
            if self._slots is not None:
                await self._slots.acquire()
            connection = self._reused()
            fresh = connection is None
            if connection is None:
                try:
                    connection = await self._connect()
                except BaseException:
                    self._give_slot()
                    raise
            response = self._send(connection, body)  # it gives the slot back when it ends
            try:
                await response.head
            except BaseException as exc:
                response.close()
                if fresh or response.received or not isinstance(exc, HTTPFailure):
                    raise
                continue
            return response

    def finished(self, connection: _Connection, reusable: bool) -> None:
        """An answer ended on `connection`: keep it for the next request, or close it."""
        if reusable and not connection.closed:
            self._idle.append(connection)
        else:
            connection.close()
        self._give_slot()

    def _give_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def close(self) -> None:
        """Close the idle connections (those in use close with their answers)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _reused(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            transport = connection.transport
            if not connection.closed and transport is not None and not transport.is_closing():
                return connection
        return None

    def _send(self, connection: _Connection, body: bytes) -> Response:
        response = Response(connection, self)
        connection.response = response
        assert connection.transport is not None
        connection.transport.write(self._head + b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
        return response

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except OSError as exc:
            # The errno's words ("Connection refused"): asyncio's own strerror is only
            # "Connect call failed (address)".
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConnectFailure(reason) from exc
        return connection
