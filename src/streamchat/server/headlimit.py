"""The request-head bound: STREAMCHAT_MAX_HEADER_BYTES of request line and headers, or 431.

uvicorn's httptools protocol puts no bound on a request's head (its h11 protocol has one,
`h11_max_incomplete_event_size`, and answers a bare 400): a client could send headers until
the process runs out of memory. `BoundedHttpToolsProtocol` counts the target and the headers
as the parser delivers them and, past the bound, answers 431 in the envelope of the API the
path belongs to, then closes the connection; the app never sees the request.

The bound travels in uvicorn's own `h11_max_incomplete_event_size` setting, the same meaning
for the other protocol, because uvicorn hands a worker process its `Config` and nothing else.

The same protocol enforces the connection bounds of connections.py: a head must be whole
within STREAMCHAT_HEAD_TIMEOUT_SECONDS of the connection (or of its first byte, after a
keep-alive wait), a body that has begun may not stop arriving for longer than
STREAMCHAT_BODY_TIMEOUT_SECONDS, and one address may hold
STREAMCHAT_MAX_CONNECTIONS_PER_ADDRESS open.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import Failure, Kind
from ..logs import escape
from . import handlers
from .connections import ConnectionBounds

log = logging.getLogger("streamchat.access")

DEFAULT_HEAD_BYTES = 16 * 1024
# Each header costs its name, its value, ": " and CRLF on the wire.
_PER_HEADER = 4


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools then stops and reports a callback error."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_limit = self.config.h11_max_incomplete_event_size or DEFAULT_HEAD_BYTES
        self._head_bytes = 0
        self._head_refused = False
        # Bytes received while a head is incomplete: httptools keeps a header it has not
        # seen the end of to itself (no callback yet), so counting callbacks alone would let
        # one endless header line grow without bound.
        self._in_head = False
        self._raw_head = 0
        bounds = getattr(self.config, "bounds", None)  # a plain uvicorn Config has none
        self._bounds = bounds if isinstance(bounds, ConnectionBounds) else ConnectionBounds()
        self._counted: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        # A body still arriving: when its last bytes came, and the clock that checks it.
        self._in_body = False
        self._body_seen = 0.0
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection against its address, or close it; start the head clock."""
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if not self._bounds.opened(address):
            transport.abort()  # no answer: a client over its share gets nothing to read
            return
        self._counted = address
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        """Uncount the connection and stop its clocks."""
        self._stop_head_clock()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._bounds.closed(self._counted)
        self._counted = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A new request: its head is counted from zero, and timed."""
        super().on_message_begin()
        self._head_bytes = 0
        self._in_head = True
        self._raw_head = 0
        if self._head_timer is None:  # after a keep-alive wait; the first one runs already
            self._start_head_clock()

    def on_headers_complete(self) -> None:
        """The head is whole: what follows is the body."""
        self._in_head = False
        self._stop_head_clock()
        self._in_body = True  # until on_message_complete: at once for a request without one
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The body is whole."""
        self._in_body = False
        super().on_message_complete()

    def _start_head_clock(self) -> None:
        self._head_timer = self.loop.call_later(self._bounds.head_timeout, self._head_too_slow)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        """No whole head in time: close, without an answer (the client is not reading one)."""
        self._head_timer = None
        if not self.transport.is_closing():
            log.debug(  # debug: silent sockets by the thousand must not flood the log
                "%s: connection closed, no request head within %.0f s",
                self.client[0] if self.client else "-",
                self._bounds.head_timeout,
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Feed the parser, then refuse a head still incomplete past the bound; time a body
        still arriving (a whole request in one read never starts that clock)."""
        super().data_received(data)
        if self._in_head and not self._head_refused:
            self._raw_head += len(data)
            if self._raw_head > self._head_limit:
                self._head_refused = True
                self._send_431()
        if self._in_body:
            self._body_seen = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self._bounds.body_timeout, self._check_body)

    def _check_body(self) -> None:
        """Close a connection whose body stopped arriving; re-arm while it is coming, or
        while we stopped reading it (the app has not taken what came)."""
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        idle = self.loop.time() - self._body_seen
        if idle < self._bounds.body_timeout or self.flow.read_paused:
            wait = max(self._bounds.body_timeout - idle, 0.1)
            self._body_timer = self.loop.call_later(wait, self._check_body)
            return
        log.debug(
            "%s: connection closed, its request body stopped for %.0f s",
            self.client[0] if self.client else "-",
            idle,
        )
        self.transport.close()

    def on_url(self, url: bytes) -> None:
        """Count the target, then keep it as uvicorn does."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count a header, then keep it as uvicorn does."""
        self._count(len(name) + len(value) + _PER_HEADER)
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error, which is ours when the head was too large."""
        if not self._head_refused:
            super().send_400_response(msg)
            return
        self._send_431()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._head_limit:
            self._head_refused = True
            raise _HeadTooLarge

    def _send_431(self) -> None:
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        log.warning(
            '%s "%s" 431: request head over %d bytes',
            self.client[0] if self.client else "-",
            escape(path[:200]),
            self._head_limit,
        )
        scope = {"type": "http", "path": path, "headers": [], "query_string": b""}
        failure = Failure(Kind.HEADERS_TOO_LARGE, "headers_too_large", limit=self._head_limit)
        response = handlers.respond(Request(scope), failure)
        status = HTTPStatus(response.status_code)
        head = [f"HTTP/1.1 {status.value} {status.phrase}".encode()]
        head += [name + b": " + value for name, value in response.raw_headers]
        head.append(b"connection: close")
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + response.body)
        self.transport.close()
