"""The OpenAI Agents SDK runs its default model (`OpenAIResponsesModel`, the Responses API)
with one tool against a real server: through the scripted fake upstream, and on the
embedded model."""

from __future__ import annotations

import asyncio

import pytest
from agents import Agent, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.models.openai_provider import OpenAIProvider
from openai import AsyncOpenAI

from .fakeupstream import FakeUpstream, Script
from .localmodel import SMALL
from .servers import ServerProcess
from .test_responses_api import CALL, MODEL

# The SDK would send its traces to OpenAI's servers.
set_tracing_disabled(True)

calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return "20 degrees and sunny"


def client_for(server: ServerProcess) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=60)


def run_config(client: AsyncOpenAI) -> RunConfig:
    """The SDK's default model provider (Responses) on our server."""
    return RunConfig(model_provider=OpenAIProvider(openai_client=client, use_responses=True))


async def next_scripts(upstream: FakeUpstream, scripts: list[Script]) -> None:
    """Give the n-th request (from the second on) the n-th script."""
    for count, script in enumerate(scripts[1:], 1):
        for _ in range(6000):
            if len(upstream.records) >= count:
                break
            await asyncio.sleep(0.005)
        upstream.script = script


async def test_an_agent_calls_a_tool_through_the_fake_upstream(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    scripts = [
        Script(tokens=[], tool_calls=CALL, finish_reason="tool_calls"),
        Script(tokens=["It is ", "20 degrees."]),
    ]
    upstream.reset(scripts[0])
    scripting = asyncio.create_task(next_scripts(upstream, scripts))
    calls.clear()
    agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather], model=MODEL)
    async with client_for(server) as client:
        result = await Runner.run(agent, "weather in Paris?", run_config=run_config(client))
    scripting.cancel()
    assert calls == ["Paris"]
    assert result.final_output == "It is 20 degrees."
    first, second = (record.body for record in upstream.records)
    assert first["messages"][0] == {"role": "system", "content": "Use the tool."}
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][-1] == {
        "role": "tool",
        "content": "20 degrees and sunny",
        "tool_call_id": "call_1",
    }


@pytest.mark.timeout(300)
async def test_an_agent_runs_on_the_embedded_model(short_answers: ServerProcess) -> None:
    agent = Agent(name="plain", instructions="Answer in one short sentence.", model=SMALL)
    async with client_for(short_answers) as client:
        result = await Runner.run(agent, "Say hello.", run_config=run_config(client))
    assert isinstance(result.final_output, str)
    assert result.final_output.strip()
