"""The SSE wire format in one place: framing our events, the ping comment, and a decoder.

Nothing else in streamchat writes `data:`. Events are stored as JSON payload bytes (see
`events.py`); framing happens only when a response writes them, so the same stored event can
go out with or without an `id:` line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PING = b": ping\n\n"
DONE = b"data: [DONE]\n\n"


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
    the spec but sent by no server we talk to, is not supported.)
    """

    __slots__ = ("_buffer", "_data", "_event", "_id")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Consume a chunk; return the events it completed."""
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        messages: list[SSEMessage] = []
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if self._data:
                    messages.append(SSEMessage(b"\n".join(self._data), self._event, self._id))
                self._data, self._event = [], None
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
            elif name == b"id":
                self._id = value.decode("utf-8", "replace")
        return messages
