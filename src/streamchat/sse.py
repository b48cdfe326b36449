"""The SSE wire format in one place: framing our events, the ping comment, and a decoder.

Nothing else in streamchat writes `data:`. Events are stored as JSON payload bytes (see
`events.py`); framing happens only when a response writes them, so the same stored event can
go out with or without an `id:` line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PING = b": ping\n\n"

# The longest event the decoder keeps waiting for its end: an upstream's chunk is a few
# hundred bytes; one that never ends must not grow a buffer without end.
MAX_EVENT_BYTES = 1 << 20


class EventTooLarge(ValueError):
    """An event went past the decoder's bound before it ended (a bad response)."""


def frame(payloads: Sequence[bytes]) -> bytes:
    """Frame payloads as consecutive events: each one `data:` line and a blank line."""
    if len(payloads) == 1:
        return b"data: " + payloads[0] + b"\n\n"
    return b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n"


def frame_with_ids(first_index: int, payloads: Sequence[bytes]) -> bytes:
    """Frame payloads with an `id:` line after each `data:` line, so EventSource resumes."""
    return b"".join(
        b"data: %b\nid: %d\n\n" % (payload, index)
        for index, payload in enumerate(payloads, first_index)
    )


@dataclass(slots=True)
class SSEMessage:
    """One decoded event: its data (lines joined by newlines), event name and id."""

    data: bytes
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Incremental `text/event-stream` decoder: feed bytes as they arrive, get whole events.

    Lines may end with LF or CRLF; comments are skipped. (A lone CR as a line end, allowed by
    the spec but sent by no server we talk to, is not supported.) An event that is one
    `data: ` line, as upstream chunks are, is cut out without looking at it line by line.
    An event over `max_event_bytes`, finished or not, raises `EventTooLarge`.
    """

    __slots__ = ("_buffer", "_id", "_max")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = b""  # the start of an event whose blank line has not come yet
        self._id: str | None = None
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Consume a chunk; return the events it completed."""
        messages: list[SSEMessage] = []
        for block in self._blocks(chunk):
            if block.startswith(b"data: ") and b"\n" not in block:
                messages.append(SSEMessage(block[6:], None, self._id))
            elif (message := self._parse(block)) is not None:
                messages.append(message)
        return messages

    def feed_data(self, chunk: bytes) -> list[bytes]:
        """Consume a chunk; return the data of the events it completed (the hot path of an
        upstream's stream: no `SSEMessage` is made for the usual one-line event)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._buffer = self._bounded(buffer)
            return []
        complete, self._buffer = buffer[:end], self._bounded(buffer[end + 2 :])
        datas = self._datas(complete)
        if len(complete) > self._max:  # rare: look for an event over the bound among them
            for data in datas:
                self._bounded(data)
        return datas

    def _datas(self, complete: bytes) -> list[bytes]:
        """The data of the events of `complete` (whole events, without the last blank line)."""
        # Every event one `data: ` line (the usual case): its only newlines are the blank
        # lines between events, each followed by `data: `. Then one split cuts them all.
        if complete.startswith(b"data: ") and complete.count(b"\n") == 2 * complete.count(
            b"\n\ndata: "
        ):
            return complete[6:].split(b"\n\ndata: ")
        datas: list[bytes] = []
        for block in complete.split(b"\n\n"):
            if block.startswith(b"data: ") and b"\n" not in block:
                datas.append(block[6:])
            elif (message := self._parse(block)) is not None:
                datas.append(message.data)
        return datas

    def _blocks(self, chunk: bytes) -> list[bytes]:
        """The complete events' blocks (lines without their blank line) of what has come."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        blocks = buffer.split(b"\n\n")
        self._buffer = self._bounded(blocks.pop())
        if len(buffer) > self._max:  # rare: look for an event over the bound among them
            for block in blocks:
                self._bounded(block)
        return blocks

    def _bounded(self, event: bytes) -> bytes:
        if len(event) > self._max:
            raise EventTooLarge(f"an event over {self._max} bytes")
        return event

    def _parse(self, block: bytes) -> SSEMessage | None:
        """The event of the lines of `block` (None if it has no data, e.g. only comments)."""
        data: list[bytes] = []
        event: str | None = None
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
            elif name == b"id":
                self._id = value.decode("utf-8", "replace")
        return SSEMessage(b"\n".join(data), event, self._id) if data else None
