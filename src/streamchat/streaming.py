"""The response that follows a hub subscription and writes it as Server-Sent Events.

Why not `fastapi.sse` or sse-starlette: we need the ping interval as a setting, events that
are ready together coalesced into one write (the hot path at high token rates), a deadline
on every send, and the HTTP status decided before the stream is committed (a refused
upstream is a 5xx, not a 200 that ends at once). The lifetime is a race, as in
sse-starlette: the pump (events, pings) against the client's disconnect; the first to
finish cancels the other, and the subscription is always closed, which is what tells the
hub that a follower left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import sse
from .hub import Subscription

log = logging.getLogger(__name__)

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
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            pump = asyncio.ensure_future(self._pump(send))
            watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
            try:
                await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
            finally:
                pump.cancel()
                watcher.cancel()
        finally:
            await self.subscription.close()
        if not pump.done() or pump.cancelled():
            return  # the client went away (the pump's cancellation may not have landed yet)
        failure = pump.exception()
        if failure is not None:
            if isinstance(failure, TimeoutError):
                log.warning("dropping a client that did not read for %ss", self.send_timeout)
            else:
                log.error("event stream failed", exc_info=failure)
            # Returning without completing the response makes the server close the connection.
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        subscription, ping_seconds = self.subscription, self.ping_seconds
        while True:
            batch = await subscription.next(ping_seconds)
            if batch is None:
                body = sse.PING
            elif self.with_ids:
                body = sse.frame_with_ids(batch.first_index, batch.payloads)
            elif batch.payloads:
                body = sse.frame(batch.payloads)
            else:
                body = b""
            if body:
                async with asyncio.timeout(self.send_timeout):
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            if batch is not None and batch.ended:
                return


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
