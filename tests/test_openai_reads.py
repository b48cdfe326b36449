"""How the provider turns an upstream's reads into batches of events, against a raw socket
that sends a whole answer in one write (one read, on loopback):

- the answer's first piece leaves on its own (the time to first token), then the rest of that
  read in one batch;
- a read's chunks are decoded together, and a bad chunk among them still ends the answer
  with an error after the events of the chunks before it;
- an event written on several `data:` lines is read like any other.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from streamchat.providers.base import (
    ChatMessage,
    Finish,
    GenerateRequest,
    ProviderEvent,
    TextDelta,
    UpstreamBadResponse,
)
from streamchat.providers.openai import OpenAIProvider

TOKENS = [f"t{i} " for i in range(40)]


def event(delta: dict[str, str], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: %b\n\n" % json.dumps({"choices": [choice]}).encode()


def answer(tokens: list[str], *, middle: bytes = b"") -> list[bytes]:
    """The events of an answer; `middle` goes after the first half of the tokens."""
    half = len(tokens) // 2
    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": token}) for token in tokens[:half]]
    events += [middle] if middle else []
    events += [event({"content": token}) for token in tokens[half:]]
    return [*events, event({}, "stop"), b"data: [DONE]\n\n"]


def one_write(events: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%b\r\n" % (len(e), e) for e in events)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"


@pytest.fixture
async def serve() -> AsyncIterator[list[bytes]]:
    """Set the list's one item to the bytes the next request is answered with."""
    reply: list[bytes] = [b""]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(reply[0])
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    reply.append(str(server.sockets[0].getsockname()[1]).encode())
    yield reply
    server.close()


async def batches_of(reply: list[bytes]) -> tuple[list[list[ProviderEvent]], Exception | None]:
    provider = OpenAIProvider(
        base_url=f"http://127.0.0.1:{reply[1].decode()}/v1",
        api_key="k",
        model="m",
        connect_timeout=5,
        read_timeout=5,
    )
    await provider.start()
    batches: list[list[ProviderEvent]] = []
    failure: Exception | None = None
    try:
        stream = await provider.open(GenerateRequest([ChatMessage("user", "hi")], model="m"))
        try:
            async for batch in stream:
                batches.append(batch)
        except UpstreamBadResponse as exc:
            failure = exc
        await stream.aclose()
    finally:
        await provider.close()
    return batches, failure


async def test_the_first_token_is_a_batch_of_its_own_and_the_rest_of_the_read_one_more(
    serve: list[bytes],
) -> None:
    serve[0] = one_write(answer(TOKENS))
    batches, failure = await batches_of(serve)
    assert failure is None
    assert batches[0] == [TextDelta(TOKENS[0])]
    rest = [e for batch in batches[1:] for e in batch]
    assert rest == [TextDelta(token) for token in TOKENS[1:]] + [Finish("stop")]
    assert len(batches) <= 3  # the rest is not split chunk by chunk


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (b'data: {"choices": [\n\n', "invalid JSON"),
        (b'data: {"choices": 42}\n\n', "unexpected chunk"),
        (b'data: {"choices": []} {"choices": []}\n\n', "invalid JSON"),
        (b'data: {"error": {"message": "overloaded"}}\n\n', "overloaded"),
    ],
)
async def test_a_bad_chunk_in_a_read_ends_the_answer_after_the_chunks_before_it(
    serve: list[bytes], bad: bytes, says: str
) -> None:
    serve[0] = one_write(answer(TOKENS, middle=bad))
    batches, failure = await batches_of(serve)
    assert failure is not None
    assert says in str(failure)
    got = [e for batch in batches for e in batch]
    assert got == [TextDelta(token) for token in TOKENS[:20]]


async def test_an_event_on_several_data_lines_is_read_like_the_others(
    serve: list[bytes],
) -> None:
    split = b'data: {"choices": [{"index": 0,\ndata: "delta": {"content": "mid "}}]}\n\n'
    serve[0] = one_write(answer(TOKENS, middle=split))
    batches, failure = await batches_of(serve)
    assert failure is None
    got = [e for batch in batches for e in batch]
    tokens = [*TOKENS[:20], "mid ", *TOKENS[20:]]
    assert got == [TextDelta(token) for token in tokens] + [Finish("stop")]
