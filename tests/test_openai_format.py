"""The OpenAI byte builders match the contract's models; requests and errors convert right."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streamchat.apis.openai_chat.errors import from_failure, is_openai_path
from streamchat.apis.openai_chat.formats import (
    DONE,
    CompletionFormat,
    OpenAIChunkFormat,
    finish_reason,
)
from streamchat.apis.openai_chat.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ErrorResponse,
)
from streamchat.errors import Kind
from streamchat.providers.base import (
    TokenUsage,
    ToolCallDelta,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from streamchat.service.generation import Outcome


def chunk(payload: bytes) -> ChatCompletionChunk:
    parsed = orjson.loads(payload)
    model = ChatCompletionChunk.model_validate(parsed)
    assert model.model_dump(mode="json", exclude_unset=True) == parsed
    return model


def test_chunks_from_role_to_done() -> None:
    fmt = OpenAIChunkFormat(model="m", created=7, include_usage=False)
    [opening] = fmt.opening("s1")
    role = chunk(opening)
    assert (role.id, role.created, role.model) == ("chatcmpl-s1", 7, "m")
    assert role.choices[0].delta.role == "assistant"
    text = 'quote " backslash \\ newline \n 中文 </script>'
    assert chunk(fmt.delta(1, text)).choices[0].delta.content == text
    finish, done = fmt.closing(2, Outcome(text=[text], usage=TokenUsage(1, 1)))
    assert chunk(finish).choices[0].finish_reason == "stop"
    assert "usage" not in orjson.loads(finish), "no usage field unless asked for"
    assert done == DONE


@pytest.mark.parametrize("include_usage", [False, True])
def test_tool_call_and_reasoning_chunks_in_openais_shapes(include_usage: bool) -> None:
    from openai.types.chat import ChatCompletionChunk as OfficialChunk

    fmt = OpenAIChunkFormat(model="m", created=7, include_usage=include_usage)
    fmt.opening("s1")
    payloads = [
        fmt.reasoning(1, 'thinking "hard"'),
        fmt.tool_call(2, ToolCallDelta(0, "call_1", "get_weather", "")),
        fmt.tool_call(3, ToolCallDelta(0, None, None, '{"city": ')),
        fmt.tool_call(4, ToolCallDelta(1, "call_2", "f", "{}")),
        fmt.tool_call(5, ToolCallDelta(0, None, None, '"Paris"}')),
    ]
    outcome = Outcome(text=[], finish_reason="tool_calls")
    outcome.add_tool_call(ToolCallDelta(0, "call_1", "get_weather", ""))
    finish, *_ = fmt.closing(6, outcome)
    for payload in [*payloads, finish]:
        chunk(payload)
        OfficialChunk.model_validate(orjson.loads(payload))  # the client's own type
    deltas = [orjson.loads(p)["choices"][0]["delta"] for p in payloads]
    assert deltas[0] == {"reasoning_content": 'thinking "hard"'}
    assert deltas[1] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"arguments": "", "name": "get_weather"},
            }
        ]
    }
    assert deltas[2] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}
    assert deltas[4] == {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}
    assert chunk(finish).choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("given", "sent"),
    [("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"),
     ("content_filter", "content_filter"), ("cancelled", "stop"), ("eos", "stop")],
)  # fmt: skip
def test_finish_reasons_pass_through_when_openai_has_them(given: str, sent: str) -> None:
    assert finish_reason(Outcome(text=[], finish_reason=given)) == sent


def test_a_non_streamed_answer_of_tool_calls_has_null_content() -> None:
    fmt = CompletionFormat(model="m", created=7)
    fmt.opening("s1")
    outcome = Outcome(text=[], finish_reason="tool_calls", reasoning=["why"])
    for piece in (
        ToolCallDelta(1, "call_b", "g", "{}"),
        ToolCallDelta(0, "call_a", "f", '{"x"'),
        ToolCallDelta(0, None, None, ": 1}"),
    ):
        outcome.add_tool_call(piece)
    [body] = fmt.closing(1, outcome)
    completion = ChatCompletion.model_validate_json(body)
    message = completion.choices[0].message
    assert message.content is None
    assert message.reasoning_content == "why"
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()] == [
        ("call_a", "f", '{"x": 1}'),
        ("call_b", "g", "{}"),
    ]


def test_include_usage_puts_null_usage_on_every_chunk_and_a_usage_chunk_last() -> None:
    fmt = OpenAIChunkFormat(model="m", created=7, include_usage=True)
    payloads = [*fmt.opening("s1"), fmt.delta(1, "a")]
    assert [orjson.loads(p)["usage"] for p in payloads] == [None, None]
    finish, usage, done = fmt.closing(
        2, Outcome(text=["a"], usage=TokenUsage(3, 4), finish_reason="length")
    )
    assert chunk(finish).choices[0].finish_reason == "length"
    last = chunk(usage)
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens == 7
    assert done == DONE


def test_cancelled_is_stop_and_unknown_usage_sends_no_usage_chunk() -> None:
    fmt = OpenAIChunkFormat(model="m", created=7, include_usage=True)
    fmt.opening("s1")
    finish, done = fmt.closing(1, Outcome(text=[], finish_reason="cancelled"))
    assert chunk(finish).choices[0].finish_reason == "stop"
    assert done == DONE


def test_failure_is_an_error_chunk_then_done() -> None:
    fmt = OpenAIChunkFormat(model="m", created=7, include_usage=False)
    fmt.opening("s1")
    failure = UpstreamTimeout("too slow")
    error, done = fmt.closing(3, Outcome(text=["a"], error=failure))
    detail = ErrorResponse.model_validate_json(error).error
    assert (detail.code, detail.message, detail.type) == (
        "upstream_timeout",
        "upstream model timed out",
        "server_error",
    )
    assert done == DONE


def test_completion_object() -> None:
    fmt = CompletionFormat(model="m", created=7)
    assert fmt.opening("s2") == []
    assert orjson.loads(fmt.delta(0, "a\n")) == "a\n"
    [payload] = fmt.closing(2, Outcome(text=["a\n", "b"], usage=TokenUsage(2, 2)))
    completion = ChatCompletion.model_validate_json(payload)
    assert completion.id == "chatcmpl-s2"
    assert completion.choices[0].message.content == "a\nb"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 4
    [failure] = fmt.closing(2, Outcome(text=[], error=UpstreamBadResponse("boom")))
    assert fmt.failure is not None
    assert fmt.failure.kind is Kind.UPSTREAM_ERROR
    assert ErrorResponse.model_validate_json(failure).error.message == "upstream model failed"


def test_request_helpers() -> None:
    request = ChatCompletionRequest.model_validate(
        {
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
            "max_tokens": 5,
            "stop": "x",
        }
    )
    assert request.messages[0].text() == "a"
    assert (request.token_limit(), request.stop_list(), request.include_usage()) == (
        5,
        ["x"],
        False,
    )


@pytest.mark.parametrize(
    "neutral",
    [
        {"n": 1},
        {"tools": []},
        {"tool_choice": "none"},
        {"logprobs": False},
        {"presence_penalty": 0},
        {"response_format": {"type": "text"}},
        {"store": False},
        {"service_tier": "auto"},
        {"modalities": ["text"]},
        {"stream": True, "stream_options": {"include_usage": False}},
    ],
)
def test_parameters_that_ask_for_nothing_are_accepted(neutral: dict[str, Any]) -> None:
    ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": "hi"}], **neutral}
    )


def test_provider_refusal_is_ours_not_the_upstreams() -> None:
    # The upstream's 401 means the operator's key is wrong: a 502 for the caller, and its
    # text (which may name its address) stays in the log.
    status, body = from_failure(UpstreamBadResponse("HTTP 401: bad key", upstream_status=401), 502)
    assert status == 502
    detail = ErrorResponse.model_validate_json(body).error
    assert (detail.type, detail.code) == ("server_error", "upstream_error")
    assert "bad key" not in detail.message


def test_provider_refusal_without_upstream_status_keeps_ours() -> None:
    status, body = from_failure(UpstreamUnavailable("cannot connect"), 503)
    assert status == 503
    assert ErrorResponse.model_validate_json(body).error.code == "upstream_unavailable"


def test_openai_paths() -> None:
    assert is_openai_path("/v1")
    assert is_openai_path("/v1/chat/completions")
    assert not is_openai_path("/v1x")
    assert not is_openai_path("/api/chat")
