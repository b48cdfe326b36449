"""The answer's first piece leaves on its own: when the upstream's first read holds many
chunks, the provider hands over the first token before decoding the rest (the time to first
token), then the rest of that read in one batch."""

from __future__ import annotations

import asyncio
import json

from streamchat.providers.base import ChatMessage, Finish, GenerateRequest, TextDelta
from streamchat.providers.openai import OpenAIProvider

TOKENS = [f"t{i} " for i in range(40)]


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: %b\n\n" % json.dumps({"choices": [choice]}).encode()


def _whole_answer() -> bytes:
    """The head and every chunk of an answer, as one write (one read, on loopback)."""
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": token}) for token in TOKENS]
    events += [_chunk({}, "stop"), b"data: [DONE]\n\n"]
    body = b"".join(b"%x\r\n%b\r\n" % (len(event), event) for event in events)
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head + body + b"0\r\n\r\n"


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(_whole_answer())
    await writer.drain()
    await reader.read()  # until the client closes
    writer.close()


async def test_the_first_token_is_a_batch_of_its_own_and_the_rest_of_the_read_one_more() -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = OpenAIProvider(
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key="k",
        model="m",
        connect_timeout=5,
        read_timeout=5,
    )
    await provider.start()
    try:
        stream = await provider.open(
            GenerateRequest(messages=[ChatMessage("user", "hi")], model="m")
        )
        batches = [batch async for batch in stream]
        await stream.aclose()
    finally:
        await provider.close()
        server.close()
    assert batches[0] == [TextDelta(TOKENS[0])]
    rest = [event for batch in batches[1:] for event in batch]
    assert rest == [TextDelta(token) for token in TOKENS[1:]] + [Finish("stop")]
    assert len(batches) <= 3  # the rest is not split chunk by chunk
