"""A fake OpenAI-compatible upstream the tests own: a real HTTP/1.1 server on a loopback port.

Each test sets a `Script` (tokens, delays, failures); every request is recorded with the
times its tokens were sent and the time the client closed the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Script:
    """What the upstream does with the next requests."""

    tokens: list[str] = field(default_factory=lambda: ["Hel", "lo", ",", " world", "!"])
    delay: float = 0.0  # seconds between tokens
    first_delay: float = 0.0  # seconds after the headers, before the first token
    status: int = 200
    error_body: bytes = b'{"error":{"message":"bad api key","type":"auth"}}'
    error_after: int | None = None  # send an error chunk after N tokens
    drop_after: int | None = None  # close the connection abruptly after N tokens
    hang_before_headers: bool = False
    headers_delay: float = 0.0  # seconds before the response's headers
    hang_after: int | None = None  # stop sending (but keep the connection) after N tokens
    finish_reason: str = "stop"
    # Raw `delta` objects sent instead of `tokens` (tool calls, reasoning), one chunk each.
    deltas: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # on an error answer (Retry-After)
    # `delta.tool_calls` pieces sent after the tokens, one chunk each (OpenAI's shape:
    # `{index, id, type, function: {name, arguments}}`, only the first piece naming it).
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def tool_call_deltas(
    calls: list[tuple[str, str, str]], piece: int = 4, *, parallel: bool = False
) -> list[dict[str, Any]]:
    """The deltas of tool calls `(id, name, arguments)` as OpenAI streams them: the first
    piece of each names it, the next ones carry `piece` characters of its arguments.
    `parallel` interleaves the calls' pieces, as some servers do."""
    streams = []
    for index, (call_id, name, arguments) in enumerate(calls):
        pieces: list[dict[str, Any]] = [
            {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
        ]
        for at in range(0, len(arguments), piece):
            pieces.append({"index": index, "function": {"arguments": arguments[at : at + piece]}})
        streams.append(pieces)
    if parallel:
        ordered = [p for group in _interleave(streams) for p in group]
    else:
        ordered = [p for pieces in streams for p in pieces]
    return [{"tool_calls": [p]} for p in ordered]


def _interleave(streams: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    rounds = max(len(s) for s in streams)
    return [[s[i] for s in streams if i < len(s)] for i in range(rounds)]


@dataclass
class Record:
    """One request as the upstream saw it."""

    body: dict[str, Any]
    received_at: float
    token_times: list[float] = field(default_factory=list)
    closed_at: float | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


async def closed_within(record: Record, since: float, seconds: float = 1.0) -> None:
    """Fail unless the client closes the request's connection within `seconds` of `since`."""
    await asyncio.wait_for(record.closed.wait(), timeout=seconds)
    assert record.closed_at is not None
    assert record.closed_at - since < seconds


class FakeUpstream:
    """Serves `POST /v1/chat/completions` as a streaming OpenAI-compatible server."""

    def __init__(self) -> None:
        self.script = Script()
        self.queued: list[Script] = []  # taken one per request before `script`
        self.records: list[Record] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def reset(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.queued.clear()
        self.records.clear()

    def queue(self, *scripts: Script) -> None:
        """The next requests get these scripts, in order; then `script` again."""
        self.queued.extend(scripts)

    async def next_record(self, wait_seconds: float = 5.0) -> Record:
        """Wait for a request to arrive; the latest one."""
        deadline = time.monotonic() + wait_seconds
        while not self.records:
            if time.monotonic() > deadline:
                raise TimeoutError("no request reached the fake upstream")
            await asyncio.sleep(0.01)
        return self.records[-1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = _headers(head)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            record = Record(orjson.loads(body), time.monotonic(), headers=headers)
            self.records.append(record)
            watcher = asyncio.create_task(_watch_close(reader, record))
            script = self.queued.pop(0) if self.queued else self.script
            try:
                await self._respond(script, record, writer)
            finally:
                if script.hang_before_headers or script.hang_after is not None:
                    await record.closed.wait()
                watcher.cancel()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _respond(self, script: Script, record: Record, writer: asyncio.StreamWriter) -> None:
        if script.hang_before_headers:
            return
        if script.headers_delay and await _closed_during(record, script.headers_delay):
            return
        if script.status != 200:
            extra = "".join(f"{k}: {v}\r\n" for k, v in script.headers.items()).encode()
            writer.write(
                b"HTTP/1.1 %d Error\r\nContent-Type: application/json\r\n%b"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%b"
                % (script.status, extra, len(script.error_body), script.error_body)
            )
            await writer.drain()
            return
        await self._stream(script, record, writer)

    async def _stream(self, script: Script, record: Record, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        model = record.body.get("model", "fake")
        send = _Sender(writer, model)
        await send.chunk({"role": "assistant", "content": ""})
        if script.first_delay and await _closed_during(record, script.first_delay):
            return
        pieces = self._pieces(script)
        if not await self._send_pieces(script, pieces, record, writer, send):
            return
        for piece in script.tool_calls:
            await send.chunk({"tool_calls": [piece]})
        await send.chunk({}, finish_reason=script.finish_reason)
        if (record.body.get("stream_options") or {}).get("include_usage"):
            await send.usage(record.body["messages"], len(pieces))
        await send.data(b"[DONE]")
        await send.end()

    @staticmethod
    def _pieces(script: Script) -> list[dict[str, Any]]:
        """The deltas to send: the script's own, or its tokens as text."""
        if script.deltas is not None:
            return script.deltas
        return [{"content": token} for token in script.tokens]

    async def _send_pieces(
        self,
        script: Script,
        pieces: list[dict[str, Any]],
        record: Record,
        writer: asyncio.StreamWriter,
        send: _Sender,
    ) -> bool:
        """Send the deltas; False if the answer ended there (a failure, a close)."""
        for i, piece in enumerate(pieces):
            if record.closed.is_set():
                return False
            if i == script.error_after:
                await send.raw({"error": {"message": "upstream exploded", "type": "server_error"}})
                await send.end()
                return False
            if i == script.drop_after:
                writer.transport.abort()
                return False
            if i == script.hang_after:
                return False
            if i and script.delay and await _closed_during(record, script.delay):
                return False
            record.token_times.append(time.monotonic())
            await send.chunk(piece)
        return True


class _Sender:
    def __init__(self, writer: asyncio.StreamWriter, model: str) -> None:
        self.writer = writer
        self.model = model

    async def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> None:
        await self.raw(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
        )

    async def usage(self, messages: list[dict[str, Any]], completion: int) -> None:
        # One prompt token per character: easy to predict in assertions.
        prompt = sum(len(str(m.get("content", ""))) for m in messages)
        await self.raw(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    async def raw(self, obj: dict[str, Any]) -> None:
        await self.data(orjson.dumps(obj))

    async def data(self, payload: bytes) -> None:
        message = b"data: " + payload + b"\n\n"
        self.writer.write(b"%x\r\n%b\r\n" % (len(message), message))
        await self.writer.drain()

    async def end(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return {name.strip().lower(): value.strip() for name, value in pairs}


async def _closed_during(record: Record, seconds: float) -> bool:
    """Sleep, waking early if the client closes; True if it did."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(record.closed.wait(), seconds)
    return record.closed.is_set()


async def _watch_close(reader: asyncio.StreamReader, record: Record) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(1024):
            pass
    record.closed_at = time.monotonic()
    record.closed.set()
