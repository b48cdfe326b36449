"""The two responses that follow a hub subscription: Server-Sent Events, and the
non-streamed OpenAI answer.

Why not `fastapi.sse` or sse-starlette: we need the ping interval as a setting, events that
are ready together coalesced into one write (the hot path at high token rates), a deadline
on every send, and the HTTP status decided before the stream is committed (a refused
upstream is a 5xx, not a 200 that ends at once). The lifetime is a race, as in
sse-starlette: the pump (events, pings) against the client's disconnect; the first to
finish cancels the other, and the subscription is always closed, which is what tells the
hub that a follower left.

A client that does not take a write within the send deadline is dropped: its connection is
aborted (see `_abort`), not closed, since a close waits for the unread data to drain.

The body messages between a stream's start and its end go to the server's own `send`
(`ServerSend` puts it in the scope), not through the middlewares' wrappers of it: those
(the trace, the admission seam, the body bound, Starlette's and FastAPI's error layers) look
at a response's start only, and at a thousand streams, a token a write, passing each event
through five of them was a twentieth of the server's time. They still see the start and the
last message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import sse
from ..apis.openai_chat.formats import CompletionFormat
from ..config import Settings
from ..hub import Subscription
from . import failures

log = logging.getLogger(__name__)

T = TypeVar("T")

# Where `ServerSend` keeps the server's own `send` in an HTTP request's scope.
SERVER_SEND = "streamchat.server_send"


class ServerSend:
    """The outermost ASGI layer: puts the server's `send` in the scope (`SERVER_SEND`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SERVER_SEND] = send
        await self.app(scope, receive, send)


_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class EventStreamResponse(Response):
    """`text/event-stream` response fed by a subscription; pings cover silences."""

    media_type = "text/event-stream"

    def __init__(
        self,
        subscription: Subscription,
        *,
        ping_seconds: float,
        send_timeout: float,
        with_ids: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.subscription = subscription
        self.ping_seconds = ping_seconds
        self.send_timeout = send_timeout
        self.with_ids = with_ids
        self.status_code = 200
        self.background = None
        self.raw_headers = _HEADERS + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = _SendDeadline(self.send_timeout)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            # The events go straight to the server; the end goes the way the start went.
            events = scope.get(SERVER_SEND, send)
            pump = await until_disconnect(receive, self._pump(events, send, deadline))
        finally:
            deadline.stop()
            await self.subscription.close()
        if deadline.expired:
            log.warning("dropping a client that did not read for %ss", self.send_timeout)
            if _abort(receive):
                await asyncio.sleep(0)  # let the server see the connection lost first
            return
        if pump is None:
            return  # the client went away
        failure = pump.exception()
        if failure is not None:
            log.error("event stream failed", exc_info=failure)
            # Returning without completing the response makes the server close the connection.

    async def _pump(self, events: Send, send: Send, deadline: _SendDeadline) -> None:
        """Write events as they come (all that are ready in one send), pings in silences:
        through `events`, and the last message through `send`."""
        deadline.watch()
        subscription, ping_seconds = self.subscription, self.ping_seconds
        clock = asyncio.get_running_loop().time
        while True:
            batch = await subscription.next(ping_seconds)
            ended = batch is not None and batch.ended
            if batch is None:
                body = sse.PING
            elif self.with_ids:
                body = sse.frame_with_ids(batch.first_index, batch.payloads)
            elif batch.payloads:
                body = sse.frame(batch.payloads)
            else:
                body = b""
            if ended:
                deadline.since = clock()
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            if body:
                deadline.since = clock()
                await events({"type": "http.response.body", "body": body, "more_body": True})
                deadline.since = None


def event_stream(
    subscription: Subscription,
    settings: Settings,
    *,
    with_ids: bool = False,
    headers: Mapping[str, str] | None = None,
) -> EventStreamResponse:
    """A stream that follows `subscription` with the server's ping interval and send deadline."""
    return EventStreamResponse(
        subscription,
        ping_seconds=settings.ping_seconds,
        send_timeout=settings.send_timeout_seconds,
        with_ids=with_ids,
        headers=headers,
    )


class _SendDeadline:
    """Cancels the pump when one of its sends has been pending for longer than `seconds`.

    `asyncio.timeout` around every send costs a timer per write, and at a thousand streams
    that was a tenth of the server's time. Instead the pump notes when a send began, and one
    timer per response looks every quarter deadline: a client that stops reading is dropped
    between one and one and a quarter deadlines after the send it did not take.
    """

    __slots__ = ("_handle", "_loop", "_seconds", "_task", "expired", "since")

    def __init__(self, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.since: float | None = None  # when the pending send began, if one is pending
        self.expired = False

    def watch(self) -> None:
        """Start watching the sends of the current task (the pump)."""
        self._task = asyncio.current_task()
        self._handle = self._loop.call_later(self._seconds / 4, self._check)

    def stop(self) -> None:
        """Stop watching."""
        if self._handle is not None:
            self._handle.cancel()

    def _check(self) -> None:
        since = self.since
        if since is not None and self._loop.time() - since >= self._seconds:
            self.expired = True
            assert self._task is not None
            self._task.cancel()
        else:
            self._handle = self._loop.call_later(self._seconds / 4, self._check)


async def until_disconnect(
    receive: Receive, work: Coroutine[Any, Any, T]
) -> asyncio.Task[T] | None:
    """Run `work` until it ends or the client leaves: its finished task, or None if the client left.

    Whichever comes first cancels the other (sse-starlette's race). The task is returned done,
    with its result or exception, never with a cancellation still pending.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        watcher.cancel()
    return task if task.done() and not task.cancelled() else None


def _abort(receive: Receive) -> bool:
    """Reset the client's connection now, discarding what it has not read; False if we can't.

    ASGI has no message for this, and a server closes the connection of a response left
    incomplete with the transport's close(), which first waits for the write buffer to drain:
    a client that never reads again would hold the connection and that buffer for good.
    uvicorn's `receive` is a method of its request cycle, which holds the transport. Under
    another server (or behind a middleware that wraps `receive`) nothing is found, and the
    server's own close is all that happens.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    if transport is None or not callable(abort):
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0: the kernel sends a reset and frees the socket's buffers at once, instead of
        # keeping an orphan socket that retries the unread data for minutes.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    abort()
    return True


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class LastEventResponse(Response):
    """A non-streamed answer: waits for the generation's last event and sends what `render`
    makes of it, `(status, JSON body)`.

    Its lifetime is a race with the client's disconnect, as for a stream: a client that
    leaves closes the subscription, which lets the generation be abandoned (after the grace
    period). The status is decided at the end, so a generation that fails is an HTTP error.
    """

    media_type = "application/json"

    def __init__(
        self,
        subscription: Subscription,
        render: Callable[[bytes], tuple[int, bytes]],
        *,
        idle_seconds: float,
    ) -> None:
        self.subscription = subscription
        self._render_last = render
        self.idle_seconds = idle_seconds
        self.status_code = 200
        self.background = None
        self.raw_headers = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            answer = await until_disconnect(receive, self._last_event())
        finally:
            await self.subscription.close()
        if answer is None:
            return  # the client went away
        status, payload = self._render_last(answer.result())
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _last_event(self) -> bytes:
        last = b""
        while True:
            batch = await self.subscription.next(self.idle_seconds)
            if batch is None:
                continue
            if batch.payloads:
                last = batch.payloads[-1]
            if batch.ended:
                return last


def completion_response(
    subscription: Subscription, fmt: CompletionFormat, *, idle_seconds: float
) -> LastEventResponse:
    """A `chat.completion` object (or the error it ended with, and its status)."""

    def render(last: bytes) -> tuple[int, bytes]:
        failure = fmt.failure
        return (200 if failure is None else failures.status_of(failure)), last

    return LastEventResponse(subscription, render, idle_seconds=idle_seconds)
