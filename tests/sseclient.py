"""Reading a server's event stream in the tests, frame by frame, with arrival times.

Deliberately independent of streamchat's own decoder: it checks the wire format itself.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass
class Frame:
    """One SSE block (the text between blank lines) and when it arrived."""

    at: float
    raw: bytes

    @property
    def is_ping(self) -> bool:
        return self.raw.startswith(b":")

    @property
    def lines(self) -> list[bytes]:
        return self.raw.split(b"\n")

    @property
    def event(self) -> dict[str, Any]:
        first = self.lines[0]
        assert first.startswith(b"data: "), self.raw
        event: dict[str, Any] = orjson.loads(first[len(b"data: ") :])
        return event


@dataclass
class _Unread:
    """What has been read of a response's body and not handed out yet."""

    buffer: bytes = b""
    pending: list[Frame] = field(default_factory=list)


# Per response, so that a second reader of one response (a helper read its first events, the
# test reads the rest) goes on where the first stopped: a read can bring several frames.
_UNREAD: weakref.WeakKeyDictionary[aiohttp.ClientResponse, _Unread] = weakref.WeakKeyDictionary()


class FrameReader:
    """Splits a response body into frames as bytes arrive."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self._unread = _UNREAD.setdefault(response, _Unread())

    async def next(self) -> Frame | None:
        unread = self._unread
        while not unread.pending:
            chunk = await self.response.content.readany()
            if not chunk:
                return None
            now = time.monotonic()
            unread.buffer += chunk
            *blocks, unread.buffer = unread.buffer.split(b"\n\n")
            unread.pending.extend(Frame(now, block) for block in blocks)
        return unread.pending.pop(0)

    async def next_event(self) -> Frame | None:
        """The next frame that is not a ping."""
        while (frame := await self.next()) is not None:
            if not frame.is_ping:
                return frame
        return None

    async def all(self) -> list[Frame]:
        frames = []
        while (frame := await self.next()) is not None:
            frames.append(frame)
        return frames


async def take_events(reader: FrameReader, count: int) -> list[dict[str, Any]]:
    """The next `count` events (pings skipped); fails if the stream ends before."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await reader.next_event()
        assert frame is not None, f"the stream ended after {got}"
        got.append(frame.event)
    return got


def events(frames: list[Frame]) -> list[dict[str, Any]]:
    return [f.event for f in frames if not f.is_ping]
