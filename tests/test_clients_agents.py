"""Agent frameworks against a real server on the scripted fake upstream: a whole tool loop
(the model calls, the framework runs the tool and sends its result back, the model answers),
and structured output, each with the framework's own client code."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from openai import AsyncOpenAI
from pydantic import BaseModel

from .fakeupstream import FakeUpstream, Script, tool_call_deltas
from .servers import ServerProcess

MODEL = "gpt-4o-mini"  # the openai provider's default model name
PARIS = '{"city": "Paris"}'


def weather_then_answer(upstream: FakeUpstream, call_id: str = "call_w1") -> None:
    """First request: a get_weather call in pieces; second: the answer in words."""
    upstream.queue(
        Script(
            deltas=tool_call_deltas([(call_id, "get_weather", PARIS)], piece=5),
            finish_reason="tool_calls",
        ),
        Script(tokens=["It is ", "sunny in ", "Paris."]),
    )


def tool_result_sent(upstream: FakeUpstream, call_id: str = "call_w1") -> dict[str, Any]:
    """The `tool` message the framework sent back in its second request."""
    assert len(upstream.records) == 2, [r.body for r in upstream.records]
    first, second = (r.body for r in upstream.records)
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assistant, tool = second["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"][0]["id"] == call_id
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == call_id
    return dict(tool)


@pytest_asyncio.fixture
async def oai(server: ServerProcess) -> AsyncIterator[AsyncOpenAI]:
    """The official client the frameworks are given, closed after the test."""
    async with AsyncOpenAI(
        base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=30
    ) as client:
        yield client


@pytest_asyncio.fixture(name="http")
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client langchain is given, closed after the test."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def langchain_model(server: ServerProcess, http: httpx.AsyncClient) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=MODEL,
        base_url=server.url + "/v1",
        api_key="x",
        max_retries=0,
        http_async_client=http,
    )


async def test_a_pydantic_ai_agent_calls_a_tool_and_answers(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    weather_then_answer(upstream)
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=oai))
    agent = Agent(model)
    seen: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    async with agent.run_stream("What's the weather in Paris?") as run:
        text = await run.get_output()
    assert seen == ["Paris"]
    assert text == "It is sunny in Paris."
    assert "sunny in Paris" in str(tool_result_sent(upstream)["content"])


async def test_pydantic_ai_structured_output_goes_through_its_output_tool(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    class City(BaseModel):
        name: str
        country: str

    upstream.queue(
        Script(
            deltas=tool_call_deltas(
                [("call_o", "final_result", '{"name": "Paris", "country": "France"}')]
            ),
            finish_reason="tool_calls",
        )
    )
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=oai))
    result = await Agent(model, output_type=City).run("The capital of France?")
    assert result.output == City(name="Paris", country="France")
    assert upstream.records[0].body["tools"][0]["function"]["name"] == "final_result"


async def test_openai_agents_with_chat_completions_and_a_tool(
    oai: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        RunConfig,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    weather_then_answer(upstream)
    model = OpenAIChatCompletionsModel(model=MODEL, openai_client=oai)
    agent = Agent(name="weather", instructions="Be brief.", model=model, tools=[get_weather])
    result = Runner.run_streamed(
        agent, "What's the weather in Paris?", run_config=RunConfig(tracing_disabled=True)
    )
    async for _ in result.stream_events():
        pass
    assert seen == ["Paris"]
    assert result.final_output == "It is sunny in Paris."
    assert "sunny in Paris" in str(tool_result_sent(upstream)["content"])


async def test_langchain_bind_tools_streams_the_call(
    server: ServerProcess, http: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    from langchain_core.messages import AIMessageChunk

    upstream.reset(
        Script(
            deltas=tool_call_deltas([("call_l", "get_weather", PARIS)], piece=3),
            finish_reason="tool_calls",
        )
    )

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return city

    llm = langchain_model(server, http)
    bound = llm.bind_tools([get_weather])
    gathered: AIMessageChunk | None = None
    async for chunk in bound.astream("What's the weather in Paris?"):
        assert isinstance(chunk, AIMessageChunk)
        gathered = chunk if gathered is None else gathered + chunk
    assert gathered is not None
    assert gathered.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_l", "type": "tool_call"}
    ]
    assert gathered.response_metadata.get("finish_reason") == "tool_calls"


async def test_langchain_with_structured_output(
    server: ServerProcess, http: httpx.AsyncClient, upstream: FakeUpstream
) -> None:
    class City(BaseModel):
        name: str
        country: str

    upstream.reset(Script(tokens=['{"name": "Paris", ', '"country": "France"}']))
    llm = langchain_model(server, http)
    city = await llm.with_structured_output(City).ainvoke("The capital of France?")
    assert city == City(name="Paris", country="France")
    assert upstream.records[-1].body["response_format"]["type"] == "json_schema"
