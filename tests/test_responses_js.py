"""The AI SDK's `openai(model)` provider (the Responses API) calls `streamText` from Node
against a real server: text, then a tool over two steps (tests/js/responses.mjs)."""

from __future__ import annotations

import asyncio
from typing import Any

from .fakeupstream import FakeUpstream, Script
from .nodejs import run_script
from .servers import ServerProcess
from .test_responses_api import CALL, MODEL


async def run_responses(*args: str) -> dict[str, Any]:
    result: dict[str, Any] = await run_script("responses.mjs", *args)
    return result


async def test_the_ai_sdk_streams_text_and_runs_a_tool(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    answers = [
        Script(),
        Script(tokens=[], tool_calls=CALL, finish_reason="tool_calls"),
        Script(tokens=["It is 20."]),
    ]
    upstream.reset(answers[0])

    async def script_next() -> None:
        for count, script in enumerate(answers[1:], 1):
            for _ in range(6000):
                if len(upstream.records) >= count:
                    break
                await asyncio.sleep(0.005)
            upstream.script = script

    scripting = asyncio.create_task(script_next())
    result = await run_responses(server.url + "/v1", MODEL, "x")
    scripting.cancel()
    assert result["text"] == "Hello, world!"
    assert result["finishReason"] == "stop"
    assert result["responseId"].startswith("resp_")
    assert result["calls"] == [{"city": "Paris"}]
    assert result["after"] == "It is 20."
    assert result["steps"] == 2
    last = upstream.records[-1].body["messages"]
    assert last[-1] == {"role": "tool", "content": '{"temp":20}', "tool_call_id": "call_1"}
