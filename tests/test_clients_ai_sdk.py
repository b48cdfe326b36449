"""The AI SDK (`ai` and `@ai-sdk/openai-compatible`, from Node) against a real server on the
scripted fake upstream: a tool loop with `streamText`, and `generateObject`."""

from __future__ import annotations

from typing import Any

from .fakeupstream import FakeUpstream, Script, tool_call_deltas
from .nodejs import run_script
from .servers import ServerProcess

MODEL = "gpt-4o-mini"  # the openai provider's default model name


async def ai_sdk(server: ServerProcess, mode: str) -> dict[str, Any]:
    """Run tests/js/ai_sdk.mjs in `mode`; what it saw."""
    result: dict[str, Any] = await run_script("ai_sdk.mjs", server.url + "/v1", MODEL, mode)
    return result


async def test_stream_text_runs_a_tool_and_answers(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.queue(
        Script(
            deltas=tool_call_deltas([("call_s", "get_weather", '{"city": "Paris"}')], piece=4),
            finish_reason="tool_calls",
        ),
        Script(tokens=["Sunny ", "in Paris."]),
    )
    seen = await ai_sdk(server, "tools")
    assert seen["calls"] == ["Paris"]
    assert seen["toolCalls"] == [["call_s", "get_weather", {"city": "Paris"}]]
    assert seen["finishReasons"] == ["tool-calls", "stop"]
    assert seen["text"] == "Sunny in Paris."
    assert {"tool-input-start", "tool-input-delta", "tool-call", "tool-result"} <= set(
        seen["parts"]
    )
    tool_message = upstream.records[1].body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == "call_s"


async def test_generate_object_reads_a_json_schema_answer(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=['{"name":"Paris",', '"country":"France"}']))
    seen = await ai_sdk(server, "object")
    assert seen == {"city": {"name": "Paris", "country": "France"}, "finishReason": "stop"}
    sent = upstream.records[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"]["required"] == ["name", "country"]
