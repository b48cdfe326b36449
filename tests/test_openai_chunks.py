"""Reading an upstream's `chat.completion.chunk`s: what we take, what we skip, what we refuse."""

from __future__ import annotations

import pytest

from streamchat.providers.base import Finish, TextDelta, TokenUsage, UpstreamBadResponse
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
    assert _chunk_events(HEAD + b'{"delta":{"content":""},"finish_reason":"tool_calls"}]}') == [
        Finish("stop")
    ]
    usage = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":null}}'
    assert _chunk_events(usage) == [TokenUsage(3, 0)]
    assert _chunk_events(b'{"choices":null,"usage":null}') == []


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
        (b'{"choices": [', "invalid JSON"),
    ],
)
def test_chunks_we_refuse(chunk: bytes, says: str) -> None:
    with pytest.raises(UpstreamBadResponse) as caught:
        _chunk_events(chunk)
    assert says in (caught.value.detail or "")
