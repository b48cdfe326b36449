"""The OpenAI-compatible answers as hub events: stream chunks, or one completion object.

Both are `StreamFormat`s (generation.py): the generation writes them into the hub like the
native events, so OpenAI requests get the same hub, pings and cancellation. Chunks are built
as bytes around a prefix encoded once per stream, because `delta` runs once per token;
`tests/test_openai_format.py` checks them against the models of `openai_protocol.py`.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...errors import Failure
from ...providers.base import TokenUsage, ToolCallDelta
from ...service.generation import Outcome
from . import errors as openai_errors

DONE = b"[DONE]"


def completion_id(stream_id: str) -> str:
    """The `id` of a completion: its stream's id, which the native cancel endpoint takes."""
    return f"chatcmpl-{stream_id}"


# OpenAI's finish reasons; the model's own passes through when it is one of them.
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def finish_reason(outcome: Outcome) -> str:
    """OpenAI's finish reason, as the model gave it; a cancelled answer stopped, as far as its
    clients know (`cancelled` is not among OpenAI's values, and strictly typed clients reject
    unknown ones)."""
    reason = outcome.finish_reason
    if reason in FINISH_REASONS:
        return reason
    return "tool_calls" if outcome.tool_calls and reason != "cancelled" else "stop"


def tool_call_piece(call: ToolCallDelta) -> dict[str, Any]:
    """One `delta.tool_calls` item: the first piece of a call names it, the next ones carry
    only more of its arguments (as OpenAI streams them)."""
    function: dict[str, str] = {"arguments": call.arguments}
    piece: dict[str, Any] = {"index": call.index}
    if call.id is not None:
        piece["id"] = call.id
        piece["type"] = "function"
    if call.name is not None:
        function["name"] = call.name
    piece["function"] = function
    return piece


def usage_object(usage: TokenUsage) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


class OpenAIChunkFormat:
    """`chat.completion.chunk` events: role first, text deltas, finish, [usage], `[DONE]`."""

    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self._head = b""
        self._tail = b',"usage":null}' if include_usage else b"}"
        # A delta chunk is these two around the JSON string of its text (once per token).
        self._delta_head = b""
        self._delta_tail = b'},"logprobs":null,"finish_reason":null}]' + self._tail
        self._arguments_heads: dict[int, bytes] = {}
        self._arguments_tail = b"}}]" + self._delta_tail

    def opening(self, stream_id: str) -> list[bytes]:
        """The chunk that carries the assistant's role."""
        head = {
            "id": completion_id(stream_id),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }
        self._head = orjson.dumps(head)[:-1] + b',"choices":['
        self._delta_head = self._head + b'{"index":0,"delta":{"content":'
        return [self._choice(b'{"role":"assistant","content":""}', b"null")]

    def delta(self, index: int, text: str) -> bytes:
        """A chunk with one piece of the answer."""
        return self._delta_head + orjson.dumps(text) + self._delta_tail

    def reasoning(self, index: int, text: str) -> bytes:
        """A chunk with a piece of reasoning (`delta.reasoning_content`)."""
        return self._choice(orjson.dumps({"reasoning_content": text}), b"null")

    def tool_call(self, index: int, call: ToolCallDelta) -> bytes:
        """A chunk with a piece of a tool call (`delta.tool_calls`)."""
        if call.id is None and call.name is None:  # more of the arguments: once per token
            head = self._arguments_heads.get(call.index)
            if head is None:
                head = self._head + b'{"index":0,"delta":{"tool_calls":[{"index":%d,' % call.index
                head += b'"function":{"arguments":'
                self._arguments_heads[call.index] = head
            return head + orjson.dumps(call.arguments) + self._arguments_tail
        return self._choice(orjson.dumps({"tool_calls": [tool_call_piece(call)]}), b"null")

    def closing(self, index: int, outcome: Outcome) -> list[bytes]:
        """The finish chunk, the usage chunk if asked for, and `[DONE]`; or the error, `[DONE]`.

        `[DONE]` follows an error too, so that clients that only wait for it stop reading;
        OpenAI's clients raise on the error chunk itself.
        """
        if outcome.error is not None:
            return [openai_errors.stream_error(outcome.error), DONE]
        chunks = [self._choice(b"{}", b'"%b"' % finish_reason(outcome).encode())]
        if self.include_usage and outcome.usage is not None:
            usage = orjson.dumps(usage_object(outcome.usage))
            chunks.append(self._head + b'],"usage":' + usage + b"}")
        chunks.append(DONE)
        return chunks

    def _choice(self, delta: bytes, finish: bytes) -> bytes:
        return b'%b{"index":0,"delta":%b,"logprobs":null,"finish_reason":%b}]%b' % (
            self._head,
            delta,
            finish,
            self._tail,
        )


class CompletionFormat:
    """A non-streamed answer: its text pieces, then the whole `chat.completion` object.

    The response waits for the last event only; the pieces keep the hub's semantics (the
    stream grows, a follower leaving is noticed) without building chunks nobody reads.
    """

    def __init__(self, *, model: str, created: int) -> None:
        self.model = model
        self.created = created
        self._id = ""
        self.failure: Failure | None = None  # how it failed, once it has ended

    def opening(self, stream_id: str) -> list[bytes]:
        """Nothing before the text."""
        self._id = completion_id(stream_id)
        return []

    def delta(self, index: int, text: str) -> bytes:
        """The piece, as a JSON string."""
        return orjson.dumps(text)

    def reasoning(self, index: int, text: str) -> None:
        """Nothing: the reasoning is in the closing object."""
        return None

    def tool_call(self, index: int, call: ToolCallDelta) -> None:
        """Nothing: the calls are in the closing object."""
        return None

    def closing(self, index: int, outcome: Outcome) -> list[bytes]:
        """The `chat.completion` object, or the error object (and `failure` is set)."""
        if outcome.error is not None:
            self.failure = outcome.error
            return [openai_errors.stream_error(outcome.error)]
        message: dict[str, object] = {
            "role": "assistant",
            "content": "".join(outcome.text) if outcome.text or not outcome.tool_calls else None,
            "refusal": None,
        }
        if outcome.tool_calls:
            calls = [outcome.tool_calls[i] for i in sorted(outcome.tool_calls)]
            message["tool_calls"] = [call.as_openai() for call in calls]
        if outcome.reasoning:
            message["reasoning_content"] = "".join(outcome.reasoning)
        completion: dict[str, object] = {
            "id": self._id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(outcome),
                }
            ],
        }
        if outcome.usage is not None:
            completion["usage"] = usage_object(outcome.usage)
        return [orjson.dumps(completion)]
