"""Tools, structured output and media through /v1, driven by the clients our users run
(openai, pydantic-ai, openai-agents, langchain) against a real server on the scripted fake
upstream. What the upstream received is compared with what the client sent, field by field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionFunctionToolParam
from pydantic import BaseModel

from .conftest import StartServer
from .dbs import Databases
from .fakeupstream import FakeUpstream, Script, tool_call_deltas
from .keyring import create_key
from .servers import ServerProcess

MODEL = "gpt-4o-mini"  # the openai provider's default model name
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PARIS = '{"city": "Paris"}'


@pytest_asyncio.fixture
async def client(server: ServerProcess) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=30
    ) as c:
        yield c


def as_sent(body: dict[str, Any]) -> dict[str, Any]:
    """What the upstream gets for a client's body: the same, streamed, with usage, no `user`
    of the client's (auth off: no uid to tell)."""
    sent = {**body, "stream": True}
    sent["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    sent.pop("user", None)
    return sent


async def test_streamed_tool_calls_in_pieces_two_in_parallel(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    calls = [("call_a", "get_weather", PARIS), ("call_b", "get_weather", '{"city": "Rome"}')]
    upstream.reset(
        Script(deltas=tool_call_deltas(calls, piece=3, parallel=True), finish_reason="tool_calls")
    )
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris and Rome?"}],
        tools=[WEATHER_TOOL],
        parallel_tool_calls=True,
        stream=True,
    )
    pieces: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                entry = pieces.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                if call.function is not None:
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert pieces == {
        0: {"id": "call_a", "name": "get_weather", "arguments": PARIS},
        1: {"id": "call_b", "name": "get_weather", "arguments": '{"city": "Rome"}'},
    }


async def test_the_openai_stream_helper_puts_the_calls_together(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.reset(
        Script(
            deltas=tool_call_deltas([("call_1", "get_weather", PARIS)]), finish_reason="tool_calls"
        )
    )
    async with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    [call] = message.tool_calls
    assert call.id == "call_1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_a_non_streamed_answer_carries_message_tool_calls(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.reset(
        Script(
            deltas=tool_call_deltas([("call_1", "get_weather", PARIS)]), finish_reason="tool_calls"
        )
    )
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert [c.model_dump() for c in choice.message.tool_calls or ()] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": PARIS},
        }
    ]


async def test_the_whole_request_reaches_the_upstream_unchanged(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    messages: list[Any] = [
        {"role": "developer", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "a.pdf"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": PARIS},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 °C"},
    ]
    extra = {
        "safety_identifier": "s-1",
        "prompt_cache_key": "k-1",
        "verbosity": "low",
        "top_k": 40,
        "min_p": 0.05,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.25,
        "logit_bias": {"50256": -100},
        "n": 1,
        "reasoning_effort": "low",
        "metadata": {"a": "b"},
        "store": False,
        "service_tier": "auto",
    }
    sent: dict[str, Any] = {
        "model": MODEL,
        "messages": messages,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "seed": 7,
        "user": "someone-else",
        "stream": True,
        "stream_options": {"include_usage": False},
    }
    await client.chat.completions.create(**sent, extra_body=extra)
    sent.update(extra)
    assert upstream.records[-1].body == as_sent(sent)


async def test_reasoning_and_content_filter_pass_through(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.reset(
        Script(
            deltas=[
                {"reasoning_content": "Think"},
                {"reasoning_content": "ing."},
                {"content": "Hm"},
            ],
            finish_reason="content_filter",
        )
    )
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    reasoning, text, finish = "", "", None
    async for chunk in stream:
        for choice in chunk.choices:
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert (reasoning, text, finish) == ("Thinking.", "Hm", "content_filter")

    upstream.reset(Script(deltas=[{"reasoning_content": "Why"}, {"content": "So"}]))
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}]
    )
    message = completion.choices[0].message
    assert message.content == "So"
    assert message.model_dump()["reasoning_content"] == "Why"


class City(BaseModel):
    name: str
    country: str


async def test_parse_with_a_pydantic_model(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    answer = '{"name": "Paris", "country": "France"}'
    upstream.reset(Script(tokens=[answer[:10], answer[10:]]))
    completion = await client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "The capital of France?"}],
        response_format=City,
    )
    assert completion.choices[0].message.parsed == City(name="Paris", country="France")
    sent = upstream.records[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "City"
    assert sent["json_schema"]["schema"]["required"] == ["name", "country"]


@pytest.mark.parametrize(
    ("status", "body", "code", "param"),
    [
        (
            400,
            b'{"error":{"message":"This model\'s maximum context length is 8192 tokens.",'
            b'"type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}',
            "context_length_exceeded",
            "messages",
        ),
        (
            404,
            b'{"error":{"message":"no such model","code":"model_not_found"}}',
            "model_not_found",
            None,
        ),
        (422, b'{"error":{"message":"bad schema","param":"tools"}}', None, "tools"),
    ],
)
async def test_the_clients_own_errors_keep_their_status_and_openai_error(
    client: AsyncOpenAI,
    upstream: FakeUpstream,
    status: int,
    body: bytes,
    code: str | None,
    param: str | None,
) -> None:
    upstream.reset(Script(status=status, error_body=body))
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        )
    error = caught.value
    assert getattr(error, "status_code", None) == status
    expected = json.loads(body)["error"]
    assert getattr(error, "code", None) == code
    assert getattr(error, "param", None) == param
    assert expected["message"] in str(error)
    assert len(upstream.records) == 1


async def test_an_upstream_429_keeps_its_status_and_retry_after(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(
        Script(
            status=429,
            error_body=b'{"error":{"message":"slow down"}}',
            headers={"Retry-After": "7"},
        )
    )
    async with AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        with pytest.raises(openai.APIStatusError) as caught:
            await c.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}]
            )
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "7"
    assert error.code == "rate_limit_exceeded"
    assert "slow down" not in str(error)


@pytest.mark.parametrize("status", [401, 403, 500, 503])
async def test_the_operators_and_upstreams_failures_are_a_generic_502(
    client: AsyncOpenAI, upstream: FakeUpstream, status: int
) -> None:
    secret = b'{"error":{"message":"key sk-secret at http://10.0.0.1 is wrong"}}'
    upstream.reset(Script(status=status, error_body=secret))
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    error = caught.value
    assert error.status_code == 502
    assert "sk-secret" not in str(error)
    assert "10.0.0.1" not in str(error)


async def test_the_upstream_is_told_the_keys_uid_never_the_clients_user(
    databases: Databases, start_server: StartServer, upstream: FakeUpstream
) -> None:
    db = await databases.new("sqlite")
    key = await create_key(db, 7)
    keyed = await start_server(auth="keys", **db)
    async with AsyncOpenAI(base_url=keyed.url + "/v1", api_key=key, max_retries=0) as c:
        await c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], user="admin"
        )
    assert upstream.records[-1].body["user"] == "streamchat-uid-7"
