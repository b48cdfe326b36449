"""`streamchat chat "…"`: send a message to a running server and print the answer as it
streams (a client: its own module, so that a server process never imports aiohttp)."""

from __future__ import annotations

import argparse
import re
import sys

import aiohttp
import orjson

from ..sse import SSEDecoder

# C0 and C1 controls but tab and line feed, and DEL: an answer (the model's, or an
# upstream's) must not move the cursor, retitle the terminal or run its escape sequences.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` without the control characters a terminal would act on."""
    return _CONTROLS.sub("", text)


async def chat(args: argparse.Namespace) -> int:
    """Send `args.message` to the server at `args.url` and print the answer as it streams."""
    body: dict[str, object] = {"message": args.message}
    if args.uid is not None or not args.key:
        body["uid"] = 1 if args.uid is None else args.uid
    if args.conversation:
        body["conversation_id"] = args.conversation
    if args.model:
        body["model"] = args.model
    url = args.url.rstrip("/") + "/api/chat"
    headers = {"Content-Type": "application/json", "Accept-Language": args.lang}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=orjson.dumps(body), headers=headers) as response,
        ):
            if response.status != 200:
                return _print_refusal(response.status, await response.read())
            return await _print_stream(response)
    except aiohttp.ClientConnectorError as exc:
        print(
            f"error: cannot connect to {args.url} ({exc.os_error.strerror}); "
            "is the server running (streamchat serve)?",
            file=sys.stderr,
        )
    except aiohttp.ClientError as exc:
        print(f"error: the connection to {args.url} failed: {exc}", file=sys.stderr)
    return 2


def _print_refusal(status: int, body: bytes) -> int:
    try:
        message = orjson.loads(body)["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")[:500]
    print(printable(f"error: HTTP {status}: {message}"), file=sys.stderr)
    return 1


async def _print_stream(response: aiohttp.ClientResponse) -> int:
    decoder = SSEDecoder()
    async for chunk in response.content.iter_any():
        for message in decoder.feed(chunk):
            event = orjson.loads(message.data)
            if event["type"] == "delta":
                sys.stdout.write(printable(event["delta"]))
                sys.stdout.flush()
            elif event["type"] == "error":
                print(printable(f"\nerror: {event['message']} ({event['code']})"), file=sys.stderr)
                return 1
            elif event["type"] == "end":
                print()
                return 0
    print("\nerror: the stream ended before its end event", file=sys.stderr)
    return 1
