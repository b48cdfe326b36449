"""Reading an upstream's `chat.completion.chunk`s: what we take, what we skip, what we refuse."""

from __future__ import annotations

import pytest

from streamchat.providers.base import (
    Finish,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UpstreamBadResponse,
)
from streamchat.providers.openai_wire import chunk_events as _chunk_events

HEAD = b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":['


def test_a_content_delta_and_the_fields_we_do_not_use() -> None:
    chunk = HEAD + b'{"index":0,"delta":{"role":"assistant","content":"h\\u00e9 \\"x\\""},'
    chunk += b'"logprobs":null,"finish_reason":null}],"system_fingerprint":"fp"}'
    assert _chunk_events(chunk) == [TextDelta('hé "x"')]


def test_finish_usage_and_empty_chunks() -> None:
    assert _chunk_events(HEAD + b'{"index":0,"delta":{},"finish_reason":"length"}]}') == [
        Finish("length")
    ]
    # The model's own reason passes through, whatever it is.
    assert _chunk_events(HEAD + b'{"delta":{"content":""},"finish_reason":"tool_calls"}]}') == [
        Finish("tool_calls")
    ]
    usage = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":null}}'
    assert _chunk_events(usage) == [TokenUsage(3, 0)]
    assert _chunk_events(b'{"choices":null,"usage":null}') == []


def test_tool_call_pieces_and_reasoning() -> None:
    first = b'{"delta":{"tool_calls":[{"index":1,"id":"call_9","type":"function",'
    first += b'"function":{"name":"f","arguments":""}}]},"finish_reason":null}]}'
    assert _chunk_events(HEAD + first) == [ToolCallDelta(1, "call_9", "f", "")]
    more = b'{"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\\"a\\""}}]}}]}'
    assert _chunk_events(HEAD + more) == [ToolCallDelta(1, None, None, '{"a"')]
    both = b'{"delta":{"reasoning_content":"hm","tool_calls":[{"index":0,"id":"c","function":'
    both += b'{"name":"g"}},{"index":1,"id":"d","function":{"name":"h","arguments":"{}"}}]}}]}'
    assert _chunk_events(HEAD + both) == [
        ReasoningDelta("hm"),
        ToolCallDelta(0, "c", "g", ""),
        ToolCallDelta(1, "d", "h", "{}"),
    ]
    # vLLM and OpenRouter name it `reasoning`.
    assert _chunk_events(HEAD + b'{"delta":{"reasoning":"so"}}]}') == [ReasoningDelta("so")]


@pytest.mark.parametrize(
    ("chunk", "says"),
    [
        (
            b'{"error":{"message":"overloaded","type":"server_error"}}',
            "reported an error: overloaded",
        ),
        (b'{"error":"quota"}', "reported an error: quota"),
        (b"[1, 2]", "unexpected chunk"),
        (HEAD + b'{"delta":{"content":42}}]}', "unexpected chunk"),
        (HEAD + b'{"delta":{"tool_calls":[{"index":"x"}]}}]}', "unexpected chunk"),
        (HEAD + b'{"delta":{"tool_calls":[{"index":128}]}}]}', "tool call numbered 128"),
        (HEAD + b'{"delta":{"tool_calls":[{"index":-1}]}}]}', "tool call numbered -1"),
        (b'{"choices": [', "invalid JSON"),
    ],
)
def test_chunks_we_refuse(chunk: bytes, says: str) -> None:
    with pytest.raises(UpstreamBadResponse) as caught:
        _chunk_events(chunk)
    assert says in (caught.value.detail or "")
