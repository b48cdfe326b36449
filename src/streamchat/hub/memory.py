"""The in-process hub, for a single node."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from .base import Hooks, StreamNotFound, Subscription
from .local import LocalStream, LocalSubscription


class MemoryHub:
    """The in-process hub, for a single node.

    Finished streams stay replayable for `ttl_seconds`, within `retain_bytes` in all and
    `owner_bytes` per owner: past its share, an owner's own oldest streams go first, so one
    uid's many large answers cannot push another's out before its time (issue 23)."""

    def __init__(self, *, ttl_seconds: float, retain_bytes: int, owner_bytes: int = 0) -> None:
        self._ttl = ttl_seconds
        self._retain_bytes = retain_bytes
        self._owner_bytes = owner_bytes  # 0: no share, only the whole budget
        self._streams: dict[str, LocalStream] = {}
        # Finished streams, oldest first, with their expiry time.
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._finished_bytes = 0
        # The same, per owner: their ids oldest first, and their bytes.
        self._owned: dict[int | None, OrderedDict[str, None]] = {}
        self._owned_bytes: dict[int | None, int] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def create(self, stream_id: str, hooks: Hooks, uid: int | None = None) -> None:
        """Create an empty stream owned by `uid`."""
        self._streams[stream_id] = LocalStream(hooks, uid)

    async def owner(self, stream_id: str) -> int | None:
        """The uid that owns the stream. Raises `StreamNotFound`."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        return stream.uid

    def append(self, stream_id: str, payload: bytes, *, last: bool = False) -> None:
        """Append the next event; `last` ends the stream."""
        stream = self._streams[stream_id]
        stream.add(payload, last)
        if last:
            self._retire(stream_id, stream)

    def extend(self, stream_id: str, payloads: list[bytes]) -> None:
        """Append several events at once (none of them the last)."""
        self._streams[stream_id].extend(payloads)

    async def subscribe(self, stream_id: str, after: int) -> Subscription:
        """Follow events with index > `after`. Raises `StreamNotFound`."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        return LocalSubscription(stream, after)

    async def followers(self, stream_id: str) -> int:
        """How many followers the stream has now (0 for unknown streams)."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.followers

    async def request_cancel(self, stream_id: str) -> bool:
        """Call the stream's `on_cancel`; False if it has ended. Raises `StreamNotFound`."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        if stream.done:
            return False
        stream.hooks.on_cancel()
        return True

    async def start(self) -> None:
        """Begin sweeping expired streams."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="hub-sweeper")

    def stopped(self) -> list[str]:
        """The sweeper, if it has stopped."""
        sweeper = self._sweeper
        return [sweeper.get_name()] if sweeper is not None and sweeper.done() else []

    async def ping(self) -> bool:
        """Always reachable: it is this process."""
        return True

    async def close(self) -> None:
        """Stop sweeping."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _retire(self, stream_id: str, stream: LocalStream) -> None:
        self._finished[stream_id] = time.monotonic() + self._ttl
        self._finished_bytes += stream.size
        owner = stream.uid
        self._owned.setdefault(owner, OrderedDict())[stream_id] = None
        self._owned_bytes[owner] = self._owned_bytes.get(owner, 0) + stream.size
        if self._owner_bytes:
            while self._owned_bytes.get(owner, 0) > self._owner_bytes:
                self._drop(next(iter(self._owned[owner])))
        while self._finished_bytes > self._retain_bytes and self._finished:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._drop(next(iter(self._finished)))

    def _drop(self, stream_id: str) -> None:
        del self._finished[stream_id]
        stream = self._streams.pop(stream_id)
        self._finished_bytes -= stream.size
        owner = stream.uid
        owned = self._owned[owner]
        del owned[stream_id]
        self._owned_bytes[owner] -= stream.size
        if not owned:  # an owner with nothing left is forgotten
            del self._owned[owner], self._owned_bytes[owner]

    def sweep(self) -> None:
        """Forget finished streams whose time to live has passed."""
        now = time.monotonic()
        while self._finished and next(iter(self._finished.values())) <= now:
            self._drop_oldest()

    async def _sweep_forever(self) -> None:
        interval = min(max(self._ttl / 10, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            self.sweep()
