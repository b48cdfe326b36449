"""The official `openai` Python package against a real server: completions, models, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess

MODEL = "gpt-4o-mini"  # the openai provider's default model name
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "你好"}]


def client_for(server: ServerProcess, **options: Any) -> AsyncOpenAI:
    """The official client as a user would make it; no retries, so failures show at once."""
    return AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, **options)


@pytest_asyncio.fixture
async def client(server: ServerProcess) -> AsyncIterator[AsyncOpenAI]:
    async with client_for(server, timeout=30) as c:
        yield c


async def collect(client: AsyncOpenAI, **options: Any) -> list[ChatCompletionChunk]:
    stream = await client.chat.completions.create(
        model=MODEL, messages=options.pop("messages", HELLO), stream=True, **options
    )
    return [chunk async for chunk in stream]


async def test_streaming_completion(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    chunks = await collect(client)
    first, *middle, last = [c for c in chunks if c.choices]
    assert first.choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello, world!"
    assert [c.choices[0].finish_reason for c in middle] == [None] * len(middle)
    assert last.choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1
    assert first.id.startswith("chatcmpl-")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {MODEL}
    assert all(c.usage is None for c in chunks), "usage only when asked for"
    assert upstream.records[-1].body["messages"] == [{"role": "user", "content": "你好"}]


async def test_include_usage_ends_with_a_usage_chunk_without_choices(client: AsyncOpenAI) -> None:
    chunks = await collect(client, stream_options={"include_usage": True})
    *answer, usage = chunks
    assert usage.choices == []
    assert usage.usage is not None
    # The fake upstream counts one prompt token per character.
    assert usage.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 2,
        "completion_tokens": 5,
        "total_tokens": 7,
    }
    assert all(c.choices and c.usage is None for c in answer)
    assert answer[-1].choices[0].finish_reason == "stop"


async def test_non_streaming_completion(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    completion = await client.chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello, world!"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 5)
    assert completion.usage.total_tokens == 7
    assert upstream.records[-1].body["stream"] is True, "the upstream is always streamed"


async def test_models_list_and_retrieve(client: AsyncOpenAI, start_server: StartServer) -> None:
    models = [m async for m in client.models.list()]
    assert [m.id for m in models] == [MODEL]
    [model] = models
    assert model.object == "model"
    assert model.owned_by == "streamchat-openai"
    assert model.created > 1_600_000_000
    assert (await client.models.retrieve(MODEL)).id == MODEL
    with pytest.raises(openai.NotFoundError) as raised:
        await client.models.retrieve("no-such-model")
    assert raised.value.code == "model_not_found"

    echo = await start_server(provider="echo", echo_delay_ms="0")
    async with client_for(echo) as echo_client:
        assert [m.id async for m in echo_client.models.list()] == ["echo"]


INVALID: list[tuple[dict[str, Any], str, str]] = [
    # arguments, the `param` at fault, a part of the message
    ({"n": 2}, "n", "n > 1 is not supported"),
    ({"logprobs": True}, "logprobs", "logprobs are not supported"),
    ({"modalities": ["text", "audio"]}, "modalities", "only the 'text' output modality"),
    (
        {
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": {"type": "function", "function": {"name": "g"}},
        },
        "tool_choice",
        "names 'g', which is not in tools",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "a b"}}]},
        "tools.0.function.name",
        "a function name must be",
    ),
    ({"tool_choice": "sometimes"}, "tool_choice", "must be 'none', 'auto', 'required'"),
    ({"response_format": {"type": "yaml"}}, "response_format", "response_format.type must be"),
    (
        {"response_format": {"type": "json_schema"}},
        "response_format",
        "needs 'json_schema'",
    ),
    ({"temperature": 3}, "temperature", "less than or equal to 2"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when stream"),
    (
        {"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]},
        "messages.0.content",
        "content parts of type 'video' are unknown",
    ),
    (
        {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]},
        "messages.0.tool_calls",
        "needs a 'function' with a 'name'",
    ),
    ({"messages": []}, "messages", "at least 1 item"),
    ({"max_tokens": 5, "max_completion_tokens": 6}, "max_completion_tokens", "set only one"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
]


@pytest.mark.parametrize(("arguments", "param", "message"), INVALID)
async def test_invalid_or_unsupported_request_raises_bad_request_with_our_message(
    client: AsyncOpenAI,
    upstream: FakeUpstream,
    arguments: dict[str, Any],
    param: str,
    message: str,
) -> None:
    arguments = {"model": MODEL, "messages": HELLO, **arguments}
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(**arguments)
    error = raised.value
    assert error.status_code == 400
    assert message in error.message
    assert error.param == param
    assert error.type == "invalid_request_error"
    assert upstream.records == [], "a refused request must not reach the model"


async def test_unknown_model_is_404(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await client.chat.completions.create(model="gpt-9", messages=HELLO)
    assert "gpt-9" in raised.value.message
    assert (raised.value.code, raised.value.param) == ("model_not_found", "model")
    assert upstream.records == []


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_down_is_a_503_api_status_error(
    start_server: StartServer, stream: bool
) -> None:
    down = await start_server(openai_base_url="http://127.0.0.1:9/v1")
    async with client_for(down) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model=MODEL, messages=HELLO, stream=stream)
    assert raised.value.status_code == 503
    assert "127.0.0.1:9" not in raised.value.message
    await down.logged(raised.value.response.headers["trace-id"], "127.0.0.1:9")
    assert raised.value.code == "upstream_unavailable"
    assert raised.value.type == "server_error"


@pytest.mark.parametrize(
    ("status", "body", "ours", "message"),
    [
        (401, b'{"error":{"message":"bad api key"}}', 502, "bad api key"),
        (403, b'{"error":{"message":"not your org"}}', 502, "not your org"),
        (500, b"kaput", 502, "kaput"),
    ],
)
async def test_an_upstream_refusal_is_our_status_and_its_text_goes_to_the_log(
    client: AsyncOpenAI,
    server: ServerProcess,
    upstream: FakeUpstream,
    status: int,
    body: bytes,
    ours: int,
    message: str,
) -> None:
    upstream.reset(Script(status=status, error_body=body))
    with pytest.raises(openai.InternalServerError) as raised:
        await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    assert raised.value.status_code == ours, "never the upstream's own 401/403/429"
    assert raised.value.type == "server_error"
    assert message not in raised.value.message
    assert upstream.base_url not in raised.value.message
    await server.logged(raised.value.response.headers["trace-id"], message, str(status))


async def test_failure_after_the_stream_began_raises_from_the_stream(
    client: AsyncOpenAI, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(error_after=3))
    stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    received: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError) as raised:
        await read()
    assert "".join(received) == "Hello,"
    assert "upstream exploded" not in raised.value.message
    assert raised.value.code == "upstream_error"
    await server.logged("upstream exploded")


async def test_failure_after_acceptance_without_stream_is_502(
    client: AsyncOpenAI, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(error_after=3))
    with pytest.raises(openai.APIStatusError) as raised:
        await client.chat.completions.create(model=MODEL, messages=HELLO)
    assert raised.value.status_code == 502
    assert "upstream exploded" not in raised.value.message
    await server.logged(raised.value.response.headers["trace-id"], "upstream exploded")


async def test_upstream_silent_mid_answer_without_stream_is_504(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    impatient = await start_server(upstream_read_timeout="0.5")
    upstream.reset(Script(hang_after=1))
    async with client_for(impatient) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model=MODEL, messages=HELLO)
    assert raised.value.status_code == 504
    assert raised.value.code == "upstream_timeout"


async def test_echo_honours_max_tokens_and_stop(start_server: StartServer) -> None:
    echo = await start_server(provider="echo", echo_delay_ms="0")
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "one two three"}]
    async with client_for(echo) as client:
        cut = await client.chat.completions.create(model="echo", messages=messages, max_tokens=2)
        stopped = await client.chat.completions.create(model="echo", messages=messages, stop="th")
        whole = await client.chat.completions.create(model="echo", messages=messages)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("one two", "length")
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (
        "one two ",
        "stop",
    )
    assert whole.choices[0].message.content == "one two three"


async def test_message_longer_than_the_limit_is_413(start_server: StartServer) -> None:
    small = await start_server(max_message_chars="10", provider="echo")
    long: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "short"},
        {"role": "user", "content": "x" * 11},
    ]
    async with client_for(small) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="echo", messages=long)
        assert raised.value.status_code == 413
        assert "at most 10 characters" in raised.value.message
        ok = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "x" * 10}]
        )
    assert ok.choices[0].message.content == "x" * 10
