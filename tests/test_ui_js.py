"""The AI SDK's own client code (npm `ai`, in Node) against a real server's UI API.

tests/js/ui.mjs drives `DefaultChatTransport` (what `useChat` uses) and `readUIMessageStream`
(what builds the message a page shows), and checks every chunk against the SDK's
`uiMessageChunkSchema`; these tests check what it saw, and what the server kept.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import orjson

from .fakeupstream import FakeUpstream, Script
from .nodejs import run_script
from .servers import ServerProcess

UID = "uid=7"
SLOW = Script(tokens=[f"w{i} " for i in range(40)], delay=0.05)


async def run_ui(scenario: str, base: str, chat_id: str, auth: str = UID, text: str = "") -> Any:
    """What tests/js/ui.mjs saw: `outcome` (the scenario's) and `seen` (every response)."""
    args = [scenario, base, auth, chat_id, *([text] if text else [])]
    result = await run_script("ui.mjs", *args)
    assert result["seen"]["invalid"] == [], "chunks that fail the SDK's schema"
    return result


def new_chat() -> str:
    return f"chat-{uuid.uuid4().hex[:12]}"


def text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


def types(response: dict[str, Any]) -> list[str]:
    return [
        "[DONE]" if data == "[DONE]" else orjson.loads(data)["type"]
        for data in response["payloads"]
    ]


async def restore(http: aiohttp.ClientSession, server: ServerProcess, chat_id: str) -> Any:
    async with http.get(f"{server.url}/api/ui/chat/{chat_id}?uid=7") as response:
        assert response.status == 200
        return await response.json()


async def test_the_sdk_reads_the_whole_answer_in_chunks_its_schema_accepts(
    server: ServerProcess, upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    chat_id = new_chat()
    result = await run_ui("send", server.url, chat_id)
    message = result["outcome"]["message"]
    assert result["outcome"]["errors"] == []
    assert message["role"] == "assistant"
    assert text_of(message) == "Hello, world!"
    (response,) = result["seen"]["responses"]
    assert response["header"] == "v1"
    assert response["contentType"].startswith("text/event-stream")
    assert types(response) == [
        "start",
        "start-step",
        "text-start",
        *["text-delta"] * 5,
        "text-end",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert orjson.loads(response["payloads"][-2]) == {"type": "finish", "finishReason": "stop"}
    assert upstream.records[0].body["messages"] == [{"role": "user", "content": "hello from node"}]

    # The page reloads: the chat comes back from the server, the answer under its stream's id.
    stored = await restore(http, server, chat_id)
    assert [(m["role"], text_of(m)) for m in stored] == [
        ("user", "hello from node"),
        ("assistant", "Hello, world!"),
    ]
    assert stored[1]["id"] == message["id"]


async def test_the_next_message_is_answered_from_the_stored_history(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    chat_id = new_chat()
    await run_ui("send", server.url, chat_id, text="first")
    upstream.reset()
    await run_ui("send", server.url, chat_id, text="second")
    # The client sent only its own copy (one message); the model got the stored history.
    assert upstream.records[0].body["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Hello, world!"},
        {"role": "user", "content": "second"},
    ]


async def test_closing_the_post_does_not_stop_the_answer_and_a_reconnect_replays_it(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    # The server's detach grace is 0: a native stream would be interrupted at once.
    upstream.reset(SLOW)
    chat_id = new_chat()
    result = await run_ui("leave-resume", server.url, chat_id)
    resumed = result["outcome"]["resumed"]
    assert resumed is not None, "the reconnect found no running answer"
    assert text_of(resumed["message"]) == "".join(SLOW.tokens)
    assert result["outcome"]["afterEnd"] is None, "a reconnect after the end is a 204"
    post, first, after = result["seen"]["responses"]
    assert post["method"] == "POST"
    assert first["method"] == "GET"
    assert first["url"].endswith(f"/api/ui/chat/{chat_id}/stream?uid=7")
    assert first["header"] == "v1"
    assert types(first)[:3] == ["start", "start-step", "text-start"], "replayed from its start"
    assert after["status"] == 204
    record = upstream.records[0]
    assert len(record.token_times) == len(SLOW.tokens), "the upstream was not closed"


async def test_a_stop_keeps_the_partial_text(
    server: ServerProcess, upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    upstream.reset(SLOW)
    chat_id = new_chat()
    result = await run_ui("send-stop", server.url, chat_id)
    outcome = result["outcome"]
    assert outcome["stop"] == {
        "status": 200,
        "body": {"code": 0, "message": "", "data": {"id": chat_id, "stopped": True}},
    }
    partial = text_of(outcome["message"])
    assert partial
    assert "".join(SLOW.tokens).startswith(partial)
    assert len(partial) < len("".join(SLOW.tokens))
    assert types(result["seen"]["responses"][0])[-3:] == ["finish-step", "abort", "[DONE]"]
    stored = await restore(http, server, chat_id)
    assert text_of(stored[-1]) == partial
    # Nothing runs any more: a reconnect is a 204, a second stop stops nothing.
    assert (await run_ui("resume", server.url, chat_id))["outcome"] is None
    async with http.post(f"{server.url}/api/ui/chat/{chat_id}/stop?uid=7") as response:
        assert (await response.json())["data"]["stopped"] is False


async def test_regenerate_replaces_the_last_answer(
    server: ServerProcess, upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    chat_id = new_chat()
    first = await run_ui("send", server.url, chat_id, text="tell me")
    upstream.reset(Script(tokens=["Another", " answer"]))
    again = await run_ui("regenerate", server.url, chat_id)
    assert text_of(again["outcome"]["message"]) == "Another answer"
    assert again["outcome"]["message"]["id"] != first["outcome"]["message"]["id"]
    # The model was asked the question again, without the answer being replaced.
    assert upstream.records[0].body["messages"] == [{"role": "user", "content": "tell me"}]
    stored = await restore(http, server, chat_id)
    assert [(m["role"], text_of(m)) for m in stored] == [
        ("user", "tell me"),
        ("assistant", "Another answer"),
    ]


async def test_reasoning_and_tool_calls_stream_as_their_parts(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    call = {"index": 0, "id": "call_1", "type": "function"}
    upstream.reset(
        Script(
            deltas=[
                {"reasoning_content": "The user wants"},
                {"reasoning_content": " the weather."},
                {"content": "Let me look."},
                {"tool_calls": [{**call, "function": {"name": "weather", "arguments": ""}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
            ],
            finish_reason="tool_calls",
        )
    )
    result = await run_ui("send", server.url, new_chat(), text="weather in Paris?")
    message = result["outcome"]["message"]
    parts = [p for p in message["parts"] if p["type"] != "step-start"]
    assert [p["type"] for p in parts] == ["reasoning", "text", "tool-weather"]
    assert parts[0]["text"] == "The user wants the weather."
    assert parts[1]["text"] == "Let me look."
    assert parts[2]["toolCallId"] == "call_1"
    assert parts[2]["state"] == "input-available"
    assert parts[2]["input"] == {"city": "Paris"}
    (response,) = result["seen"]["responses"]
    assert orjson.loads(response["payloads"][-2]) == {
        "type": "finish",
        "finishReason": "tool-calls",
    }


async def test_a_failure_after_the_start_ends_with_a_generic_error_chunk(
    server: ServerProcess, upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    upstream.reset(Script(error_after=2))
    chat_id = new_chat()
    result = await run_ui("send", server.url, chat_id)
    outcome = result["outcome"]
    assert text_of(outcome["message"]) == "Hello"
    # The SDK hands the text to the page's onError; the upstream's own words stay in the log.
    assert outcome["errors"] == ["Error: 上游模型服务出错"]
    (response,) = result["seen"]["responses"]
    assert types(response)[-4:] == ["text-delta", "text-end", "error", "[DONE]"]
    assert "upstream exploded" not in response["payloads"][-2]
    stored = await restore(http, server, chat_id)
    assert text_of(stored[-1]) == "Hello"
