"""OpenAI's wire format, from the upstream's side: the request we send, the chunks we read,
the error bodies we are refused with."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from .base import (
    ChatMessage,
    Finish,
    GenerateRequest,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UpstreamBadResponse,
)
from .http1 import Response


def request_body(request: GenerateRequest) -> bytes:
    """The upstream request: the client's own body when it sent one, else one built from
    the conversation; always streamed with usage, naming the upstream's model and our `user`."""
    if request.passthrough is not None:
        body = dict(request.passthrough)
    else:
        body = {"messages": [_message_out(m) for m in request.messages]}
        optional = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "stop": request.stop or None,
            "tools": request.tools,
            "tool_choice": request.tool_choice,
            "parallel_tool_calls": request.parallel_tool_calls,
            "response_format": request.response_format,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
    body["model"] = request.model
    body["stream"] = True
    options = body.get("stream_options")
    body["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    if request.user is not None:
        body["user"] = request.user
    else:
        body.pop("user", None)
    return orjson.dumps(body)


def _message_out(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.parts or message.content}
    if message.tool_calls:
        out["tool_calls"] = message.tool_calls
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def openai_error(body: bytes) -> dict[str, Any]:
    """The `error` object of an OpenAI-shaped error body, or {}."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


def error_detail(status: int, body: bytes) -> str:
    """`HTTP 401: <the upstream's own message>` from an OpenAI-shaped (or any) error body."""
    message = body.decode("utf-8", "replace").strip()[:500]
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        elif isinstance(parsed.get("message"), str):
            message = parsed["message"]
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"


def retry_after_seconds(response: Response) -> int | None:
    """The upstream's `Retry-After` in whole seconds (at least 1), if it sent one in seconds."""
    for name, value in response.headers:
        if name == b"retry-after":
            try:
                return max(1, min(int(float(value)), 3600))
            except ValueError:
                return None
    return None


# Tool calls of one answer: indexes past this are a broken upstream, not a model's choice.
MAX_TOOL_CALLS = 128


class _Function(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct, gc=False):
    index: int = 0
    id: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct, gc=False):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # the name some servers (vLLM, OpenRouter) use
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct, gc=False):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Chunk(msgspec.Struct, gc=False):
    """What we read of a `chat.completion.chunk`; every other field is skipped unread."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = None


# msgspec rather than orjson for chunks: decoding into these types skips the fields we do not
# use (id, model, created, logprobs…) without building them, 1.1 µs a chunk instead of 1.9.
# `gc=False`: a chunk's structs hold no cycles, and untracked ones cost a tenth less to make.
_decoder = msgspec.json.Decoder(_Chunk)
_decode_chunk = _decoder.decode
_decode_lines = _decoder.decode_lines


def chunk_events(data: bytes) -> list[ProviderEvent]:
    """The events in one `chat.completion.chunk`."""
    try:
        chunk = _decode_chunk(data)
    except msgspec.ValidationError as exc:
        raise UpstreamBadResponse(f"the upstream sent an unexpected chunk: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise UpstreamBadResponse(f"the upstream sent invalid JSON: {exc}") from exc
    events: list[ProviderEvent] = []
    _add_events(chunk, events)
    return events


def chunks_events(datas: list[bytes]) -> list[ProviderEvent]:
    """The events in several chunks (one read's), decoded in one call as JSON lines.

    Raises `UpstreamBadResponse` if any of them is not a chunk, without saying which: decode
    them one by one with `chunk_events` then, to name it and keep the events before it. A
    chunk that spans lines (an event of several `data:` lines) takes that way too.
    """
    if len(datas) == 1:
        return chunk_events(datas[0])
    try:
        chunks = _decode_lines(b"\n".join(datas))
    except msgspec.MsgspecError as exc:
        raise UpstreamBadResponse(f"the upstream sent an unexpected chunk: {exc}") from exc
    if len(chunks) != len(datas):  # a line of two values, or of none
        raise UpstreamBadResponse("the upstream sent an unexpected chunk")
    events: list[ProviderEvent] = []
    for chunk in chunks:
        _add_events(chunk, events)
    return events


def _add_events(chunk: _Chunk, events: list[ProviderEvent]) -> None:
    """Add the events of a decoded chunk to `events`."""
    if chunk.error is not None:
        error = chunk.error
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamBadResponse(f"the upstream reported an error: {message}")
    if chunk.choices:
        choice = chunk.choices[0]
        delta = choice.delta
        if delta is not None:
            if delta.content:
                events.append(TextDelta(delta.content))
            elif delta.tool_calls or delta.reasoning_content or delta.reasoning:
                _rare_pieces(delta, events)
        if choice.finish_reason:
            events.append(Finish(choice.finish_reason))
    usage = chunk.usage
    if usage is not None:
        events.append(TokenUsage(usage.prompt_tokens or 0, usage.completion_tokens or 0))


def _rare_pieces(delta: _Delta, events: list[ProviderEvent]) -> None:
    """Reasoning and tool-call pieces (off the text path, which is one test)."""
    reasoning = delta.reasoning_content or delta.reasoning
    if reasoning:
        events.append(ReasoningDelta(reasoning))
    for call in delta.tool_calls or ():
        if not 0 <= call.index < MAX_TOOL_CALLS:
            raise UpstreamBadResponse(f"the upstream sent a tool call numbered {call.index}")
        function = call.function
        events.append(
            ToolCallDelta(
                call.index,
                call.id,
                None if function is None else function.name,
                (None if function is None else function.arguments) or "",
            )
        )
