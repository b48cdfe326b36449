"""The node's one pub/sub connection to Redis, whatever the number of streams it follows.

It carries the live batches of every stream followed on this node from elsewhere (one
channel per stream, subscribed while followed) and the control messages (`cancel`, `idle`)
for the streams this node writes. A lost connection is reopened with every channel; since
messages sent meanwhile are lost, `on_connect` then has the hub re-read what it may have
missed. Redis out of reach for longer than the outage budget calls `on_outage` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub

from .base import HubUnavailable
from .redis_wire import REDIS_ERRORS, backoff

log = logging.getLogger(__name__)

Handler = Callable[[bytes], None]


class Listener:
    """One pub/sub connection: live channels come and go, control messages always arrive."""

    def __init__(
        self,
        client: redis.Redis,
        node_channel: str,
        *,
        outage_seconds: float,
        on_control: Handler,
        on_connect: Callable[[], None],
        on_outage: Callable[[], None],
    ) -> None:
        self._client = client
        self._node_channel = node_channel.encode()
        self._outage = outage_seconds
        self._keepalive = min(5.0, outage_seconds / 2)
        self._on_control = on_control
        self._on_connect = on_connect
        self._on_outage = on_outage
        self._handlers: dict[bytes, Handler] = {}
        self._subscribed: set[bytes] = set()  # asked of the current connection
        self._confirmed: set[bytes] = set()  # and confirmed by Redis
        self._waiting: dict[bytes, list[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._changed = asyncio.Event()
        self.down_since: float | None = time.monotonic()
        self._up = asyncio.Event()

    async def watch(self, channel: str, handler: Handler) -> None:
        """Deliver `channel`'s messages to `handler` from the moment this returns.

        Raises `HubUnavailable` if Redis does not confirm within the outage budget.
        """
        key = channel.encode()
        self._handlers[key] = handler
        if key in self._confirmed and key in self._subscribed:
            return  # unwatched and watched again before it was unsubscribed
        confirmed = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(confirmed)
        self._changed.set()
        try:
            async with asyncio.timeout(self._outage):
                await confirmed
        except TimeoutError:
            self.unwatch(channel, handler)
            raise HubUnavailable(f"redis did not confirm a subscription to {channel}") from None
        finally:
            waiting = self._waiting.get(key, [])
            if confirmed in waiting:
                waiting.remove(confirmed)

    async def connected(self, seconds: float) -> bool:
        """Wait up to `seconds` until the connection is up; whether it is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._up.wait()
        return self._up.is_set()

    def unwatch(self, channel: str, handler: Handler) -> None:
        """Stop delivering `channel` to `handler` (unless another handler took it over)."""
        key = channel.encode()
        if self._handlers.get(key) is handler:
            del self._handlers[key]
            self._changed.set()

    async def run(self) -> None:
        """Keep the connection open, reading and dispatching, forever."""
        attempt = 0
        outage_reported = False
        while True:
            pubsub = self._client.pubsub()
            try:
                snapshot = set(self._handlers)
                self._confirmed = set()
                await pubsub.subscribe(self._node_channel, *snapshot)
                self._pubsub, self._subscribed = pubsub, snapshot
                self._changed.set()  # channels watched while this was connecting
                attempt, outage_reported = 0, False
                await self._read(pubsub)
            except REDIS_ERRORS as exc:
                log.warning("redis pub/sub connection lost: %s", exc)
            except Exception:  # a reply the client could not read: reconnect, as for a loss
                log.exception("redis pub/sub connection failed")
            finally:
                self._pubsub = None
                self._up.clear()
                if self.down_since is None:
                    self.down_since = time.monotonic()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if not outage_reported and time.monotonic() - self.down_since > self._outage:
                outage_reported = True
                self._on_outage()
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def sync_forever(self) -> None:
        """Subscribe and unsubscribe channels as they are watched and unwatched."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            pubsub = self._pubsub
            if pubsub is None:
                continue  # the next connection subscribes every watched channel
            wanted = set(self._handlers)
            add, drop = wanted - self._subscribed, self._subscribed - wanted
            self._subscribed = wanted
            self._confirmed -= drop
            try:
                if add:
                    await pubsub.subscribe(*add)
                if drop:
                    await pubsub.unsubscribe(*drop)
            except REDIS_ERRORS as exc:
                # The reader sees the broken connection too, and reconnects with everything.
                log.debug("redis (un)subscribe failed: %s", exc)
            except Exception:  # a bug or a bad reply: the next change tries again
                log.exception("redis (un)subscribe failed")

    async def _read(self, pubsub: PubSub) -> None:
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, False
                self._dispatch(message)
            elif now - heard > 2 * self._keepalive:
                raise redis_errors.ConnectionError("redis stopped answering pings")
            elif now - heard > self._keepalive and not pinged:
                pinged = True
                await pubsub.ping()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if kind == "message":
            handler = self._on_control if channel == self._node_channel else None
            handler = handler or self._handlers.get(channel)
            if handler is not None:
                try:
                    handler(message["data"])
                except Exception:  # one stream's bad message must not stop every other one
                    log.exception("handling a message of %r failed", channel)
        elif kind == "subscribe":
            self._confirmed.add(channel)
            if channel == self._node_channel:
                # Redis has taken the whole SUBSCRIBE: every channel of it is live now.
                self.down_since = None
                self._up.set()
                self._on_connect()
            for confirmed in self._waiting.pop(channel, []):
                if not confirmed.done():
                    confirmed.set_result(None)
