"""The UI message stream (the AI SDK's protocol, `x-vercel-ai-ui-message-stream: v1`):
provider events as its chunks.

An answer is one message of one step: `start`, `start-step`, then its parts in the order
they come — a text part (`text-start`, `text-delta`…, `text-end`), a reasoning part (the
same with `reasoning-`), tool calls (`tool-input-start`, `tool-input-delta`…, and
`tool-input-available` once the answer ends and the input is whole) — then `finish-step`,
`finish` with the finish reason, and `[DONE]`. A part ends when another kind begins, so the
first piece of a kind is several chunks (the end of the last part, the start of its own,
itself); every other piece is one chunk, built as bytes around a prefix encoded once per
part, because a text delta comes once per token. Every chunk is checked against the SDK's
own schema (`uiMessageChunkSchema`) by tests/test_ui_js.py.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from ...errors import Failure, Lang
from ...providers.base import ToolCallDelta
from ...service.generation import Outcome, ToolCall

DONE = b"[DONE]"
HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}

# Our finish reasons -> the SDK's (`FinishReason` of the installed `ai`).
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
}

_Kind = Literal["text", "reasoning"]


def _chunk(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def finish_reason(outcome: Outcome) -> str:
    """The SDK's finish reason for how the answer ended (`other` for a reason it lacks)."""
    reason = FINISH_REASONS.get(outcome.finish_reason)
    if reason is not None:
        return reason
    return "tool-calls" if outcome.tool_calls else "other"


class UIMessageFormat:
    """The chunks of one answer, `message_id` being its stored id (what `GET
    /api/ui/chat/{id}` restores it as). Stateful: one instance per stream."""

    def __init__(self, *, message_id: str, model: str = "", lang: Lang = "en") -> None:
        self.message_id = message_id
        self.model = model  # the model that answers (the service sets it)
        self.lang: Lang = lang
        self._open: _Kind | None = None  # the text or reasoning part being written
        self._parts = 0  # parts begun, for their ids
        self._head = b""  # a delta chunk of the open part, up to its text
        self._end = b""  # the chunk that ends the open part
        self._calls: dict[int, str] = {}  # a tool call's index -> its id

    def opening(self, stream_id: str) -> list[bytes]:
        """`start` (with the answer's id: orphans.py knows a UI stream by it) and `start-step`."""
        return [_chunk(type="start", messageId=self.message_id), b'{"type":"start-step"}']

    def delta(self, index: int, text: str) -> bytes | list[bytes]:
        """A `text-delta`, after ending the part before and starting a text part if needed."""
        if self._open == "text":
            return self._head + orjson.dumps(text) + b"}"
        return [*self._switch("text"), self._head + orjson.dumps(text) + b"}"]

    def reasoning(self, index: int, text: str) -> bytes | list[bytes]:
        """A `reasoning-delta`, after starting a reasoning part if needed."""
        if self._open == "reasoning":
            return self._head + orjson.dumps(text) + b"}"
        return [*self._switch("reasoning"), self._head + orjson.dumps(text) + b"}"]

    def tool_call(self, index: int, call: ToolCallDelta) -> bytes | list[bytes] | None:
        """`tool-input-start` for a call's first piece, `tool-input-delta` for its arguments."""
        chunks: list[bytes] = []
        call_id = self._calls.get(call.index)
        if call_id is None:
            chunks += self._close()
            call_id = self._calls[call.index] = call.id or f"{self.message_id}-call-{call.index}"
            chunks.append(
                _chunk(type="tool-input-start", toolCallId=call_id, toolName=call.name or "")
            )
        if call.arguments:
            chunks.append(
                _chunk(type="tool-input-delta", toolCallId=call_id, inputTextDelta=call.arguments)
            )
        if not chunks:
            return None
        return chunks[0] if len(chunks) == 1 else chunks

    def closing(self, index: int, outcome: Outcome) -> list[bytes]:
        """The open part's end and the whole tool inputs; then `finish-step`, `finish` and
        `[DONE]`, or `error` and `[DONE]`, or (stopped) `abort` and `[DONE]`."""
        chunks = self._close()
        for position in sorted(outcome.tool_calls):
            chunks.append(self._input(position, outcome.tool_calls[position]))
        if outcome.error is not None:
            return [*chunks, self._error(outcome.error), DONE]
        chunks.append(b'{"type":"finish-step"}')
        if outcome.finish_reason == "cancelled":
            # Stopped (POST …/stop): the SDK's own `abort`, as its servers send when stopped.
            return [*chunks, b'{"type":"abort","reason":"cancelled"}', DONE]
        return [*chunks, _chunk(type="finish", finishReason=finish_reason(outcome)), DONE]

    def _switch(self, kind: _Kind) -> list[bytes]:
        """End the open part and start a part of `kind`; its chunks."""
        chunks = self._close()
        self._parts += 1
        part_id = f"{kind}-{self._parts}"
        self._open = kind
        self._head = b'{"type":"%b-delta","id":"%b","delta":' % (kind.encode(), part_id.encode())
        self._end = _chunk(type=f"{kind}-end", id=part_id)
        chunks.append(_chunk(type=f"{kind}-start", id=part_id))
        return chunks

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [self._end]

    def _input(self, position: int, call: ToolCall) -> bytes:
        """A tool call's whole input, or `tool-input-error` if its arguments are not JSON."""
        call_id = self._calls.get(position) or call.id
        arguments = "".join(call.arguments)
        try:
            value = orjson.loads(arguments or "{}")
        except orjson.JSONDecodeError:
            return _chunk(
                type="tool-input-error",
                toolCallId=call_id,
                toolName=call.name,
                input=arguments,
                errorText="the model's tool input is not valid JSON",
            )
        return _chunk(
            type="tool-input-available", toolCallId=call_id, toolName=call.name, input=value
        )

    def _error(self, failure: Failure) -> bytes:
        # The failure's own message: generic by construction (an upstream's text and address
        # go to the log, never into a message).
        return _chunk(type="error", errorText=failure.message(self.lang))
