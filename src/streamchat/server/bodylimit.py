"""The request-body bound of every route: STREAMCHAT_MAX_BODY_BYTES, or 413.

One ASGI wrapper inside the admission seam, so the routes DirectRoutes serves (which read
the body themselves), FastAPI's routes and anything mounted are bounded alike. A declared
`Content-Length` over the bound is refused before a byte of the body is read; a chunked (or
understated) body is counted as it arrives and refused the moment it passes the bound, so
the server never holds more than the bound plus one chunk of it. Either way the answer is
the same 413 in the envelope of the API the path belongs to (handlers.respond).
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import Failure, Kind
from . import handlers

# How long, and how much, of a refused body is read and dropped before the connection closes.
DRAIN_SECONDS = 5.0
DRAIN_BYTES = 512 * 1024 * 1024


class BodyTooLarge(Failure):
    """The body passed the bound while it was being read."""

    kind = Kind.BODY_TOO_LARGE
    key = "body_over_limit"


class BodyLimit:
    """ASGI middleware: at most `max_bytes` of request body, else 413 (nothing else runs)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        counted = _Counted(receive, send, self.max_bytes)
        try:
            await self.app(scope, counted.receive, counted.send)
        except BodyTooLarge:
            pass  # answered below
        except Exception:
            # The app may wrap the error of `receive` in its own (FastAPI: "There was an
            # error parsing the body"); the bound, not that, is what the client gets.
            if not counted.tripped:
                raise
        if counted.tripped and not counted.started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413, then read and drop what the client still sends, for a while.

        Most clients read the answer only once they have sent the whole body; a server that
        closes with unread data resets the connection, and they never see the 413. So the
        answer goes out at once, with its length, and is ended only after the rest of the
        body has been read and dropped (as nginx's lingering close does), within a time and
        a byte budget: memory stays flat, and a client cannot hold the connection forever.
        """
        failure = BodyTooLarge(limit=self.max_bytes)
        response = handlers.respond(Request(scope), failure)
        response.headers["connection"] = "close"
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                drained = 0
                while drained < DRAIN_BYTES:
                    message = await receive()
                    drained += len(message.get("body", b""))
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Counted:
    """`receive` that counts body bytes, and `send` that drops what the app answers after
    the bound tripped (its answer to the error; ours goes instead)."""

    __slots__ = ("_max", "_receive", "_send", "received", "started", "tripped")

    def __init__(self, receive: Receive, send: Send, max_bytes: int) -> None:
        self._receive = receive
        self._send = send
        self._max = max_bytes
        self.received = 0
        self.tripped = False
        self.started = False

    @property
    def transport(self) -> object:
        """The transport of the server's own `receive`, which the stream response reaches
        through `receive.__self__` to reset a client that stopped reading
        (routes/responses.py `_abort`): a wrapper must not hide it."""
        return getattr(getattr(self._receive, "__self__", None), "transport", None)

    async def receive(self) -> Message:
        if self.tripped:
            raise BodyTooLarge(limit=self._max)
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self._max:
                self.tripped = True
                raise BodyTooLarge(limit=self._max)
        return message

    async def send(self, message: Message) -> None:
        if self.tripped:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    """The declared body length; None if there is none (or it is not a number: the server
    refuses those before the app sees them). Past 18 digits, a number larger than any bound."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            if not text.isdigit():
                return None
            return int(text) if len(text) <= 18 else 10**18
    return None
