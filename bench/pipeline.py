"""The streaming path in one process, without sockets: CPU per token of the Python work.

`python -m bench.pipeline [--per-read N] [--tools] [--answers N] [--repeat N]`

An upstream's answer (a `chat.completion.chunk` a token, as OpenAI streams them) is handed to
`http1.Response` in reads of `--per-read` chunks; from there the real code runs: the chunked
body and SSE parsing, the chunk decoding (`OpenAIStream`), the generation's pump into the
in-process hub, a follower's batches and their SSE frames. What it leaves out is the socket
on both sides and uvicorn's send, so its figure is the part of `burst`'s CPU per token that
our code decides, and it moves much less than `burst` on a shared machine: the figure is
the best of `--repeat` runs of `--answers` answers, in CPU time (time.process_time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from streamchat import sse
from streamchat.apis.openai_chat.formats import OpenAIChunkFormat
from streamchat.hub.base import Hooks
from streamchat.hub.memory import MemoryHub
from streamchat.providers import http1
from streamchat.providers.openai import OpenAIStream
from streamchat.service.generation import Generation

TOKENS = 200
WORDS = ["Streaming ", "is ", "how ", "tokens ", "arrive "]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-bench-1",
        "object": "chat.completion.chunk",
        "created": 1796570199,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: %b\n\n" % json.dumps(chunk, separators=(",", ":")).encode()


def answer_reads(per_read: int, tools: bool) -> list[bytes]:
    """The bytes of one answer as an upstream sends them, cut into reads."""
    events = [_chunk({"role": "assistant", "content": ""})]
    if tools:
        call = {"index": 0, "id": "call_1", "type": "function"}
        call["function"] = {"name": "get_weather", "arguments": ""}
        events.append(_chunk({"tool_calls": [call]}))
        events += [
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": WORDS[i % 5]}}]})
            for i in range(TOKENS)
        ]
    else:
        events += [_chunk({"content": WORDS[i % 5]}) for i in range(TOKENS)]
    events += [_chunk({}, "tool_calls" if tools else "stop"), b"data: [DONE]\n\n"]
    wire = [b"%x\r\n%b\r\n" % (len(event), event) for event in events]
    reads = [b"".join(wire[i : i + per_read]) for i in range(0, len(wire), per_read)]
    reads[0] = HEAD + reads[0]
    reads[-1] += b"0\r\n\r\n"
    return reads


class _Connection:
    transport = None

    def close(self) -> None:
        pass


class _Pool:
    def finished(self, connection: object, reusable: bool) -> None:
        pass


async def _one(hub: MemoryHub, stream_id: str, reads: list[bytes]) -> None:
    response = http1.Response(_Connection(), _Pool())  # type: ignore[arg-type]
    await hub.create(stream_id, Hooks())
    fmt = OpenAIChunkFormat(model="bench-model", created=1, include_usage=False)
    for payload in fmt.opening(stream_id):
        hub.append(stream_id, payload)
    follower = await hub.subscribe(stream_id, -1)
    generation = Generation(hub, stream_id, OpenAIStream(response, "upstream", set()), fmt)
    task = asyncio.ensure_future(generation.run(1))

    async def upstream() -> None:
        for read in reads:
            response.feed(read)
            await asyncio.sleep(0)

    feeder = asyncio.ensure_future(upstream())
    while True:
        batch = await follower.next(10)
        assert batch is not None
        sse.frame(batch.payloads)
        if batch.ended:
            break
    await task
    await feeder


async def measure(per_read: int, tools: bool, answers: int, repeat: int) -> float:
    """The best CPU µs per token over `repeat` runs of `answers` answers."""
    reads = answer_reads(per_read, tools)
    best = float("inf")
    for run in range(repeat):
        hub = MemoryHub(ttl_seconds=60, retain_bytes=10**9)
        started = time.process_time()
        for n in range(answers):
            await _one(hub, f"s{run}-{n}", reads)
        best = min(best, (time.process_time() - started) / (answers * TOKENS) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-read", type=int, default=20, help="chunks a read (20)")
    parser.add_argument("--tools", action="store_true", help="a tool call's argument pieces")
    parser.add_argument("--answers", type=int, default=300, help="answers a run (300)")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best counts (5)")
    args = parser.parse_args()
    figure = asyncio.run(measure(args.per_read, args.tools, args.answers, args.repeat))
    kind = "tool-call pieces" if args.tools else "text"
    print(f"pipeline, {kind}, reads of {args.per_read}: {figure:.2f} µs CPU per token")


if __name__ == "__main__":
    main()
