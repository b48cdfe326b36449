"""The Responses API (DESIGN §12) with the official `openai` client, on a real server with keys
and the scripted fake upstream: streamed and not, tools, `text.format`, chains, background
answers followed again after N events, cancel, delete, input items, and the owner rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from .conftest import StartServer
from .dbs import DatabaseSettings, sqlite_settings
from .fakeupstream import FakeUpstream, Record, Script, closed_within
from .keyring import Keys, bearer, create_key, make_keys
from .servers import ServerProcess

MODEL = "gpt-4o-mini"
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
RESPONSE = TypeAdapter(Response)
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}
CALL = [
    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather"}},
    {"index": 0, "function": {"arguments": '{"city":'}},
    {"index": 0, "function": {"arguments": '"Paris"}'}},
]

Keyed = tuple[ServerProcess, Keys]
_KEYED: list[Keyed] = []
_DB: list[DatabaseSettings] = []


@pytest_asyncio.fixture
async def keyed(start_server: StartServer, scratch: str) -> Keyed:
    """A server with keys on the fake upstream (grace 0: a left stream stops at once)."""
    if not _KEYED:
        db = sqlite_settings(scratch)
        keys = await make_keys(db)
        _DB.append(db)
        server = await start_server(auth="keys", detach_grace_seconds="0", ping_seconds="1", **db)
        _KEYED.append((server, keys))
    return _KEYED[0]


def client_for(server: ServerProcess, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)


@pytest_asyncio.fixture
async def client(keyed: Keyed) -> AsyncIterator[AsyncOpenAI]:
    async with client_for(keyed[0], keyed[1].user7) as c:
        yield c


async def tokens_sent(record: Record, count: int) -> None:
    """Wait until the fake upstream has sent `count` tokens of `record`."""
    for _ in range(500):
        if len(record.token_times) >= count:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{count} tokens were not sent")


def checked(events: list[Any]) -> list[Any]:
    """Every event valid against the official types, numbered 0, 1, 2 … from `first`."""
    for event in events:
        EVENTS.validate_python(event.to_dict())
    return events


async def test_streamed_text_events_are_openais(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    stream = await client.responses.create(model=MODEL, input="你好", stream=True)
    events = checked([event async for event in stream])
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "Hello, world!"
    )
    final = events[-1].response
    RESPONSE.validate_python(final.to_dict())
    assert final.status == "completed"
    assert final.output_text == "Hello, world!"
    assert final.id.startswith("resp_")
    sent = upstream.records[-1].body
    assert sent["messages"] == [{"role": "user", "content": "你好"}]
    assert "input" not in sent, "an upstream is sent a chat completion, not the Responses body"


async def test_not_streamed_then_retrieve_input_items_delete(client: AsyncOpenAI) -> None:
    response = await client.responses.create(
        model=MODEL, input="hi", instructions="be brief", metadata={"k": "v"}
    )
    RESPONSE.validate_python(response.to_dict())
    assert (response.status, response.output_text) == ("completed", "Hello, world!")
    assert response.instructions == "be brief"
    assert response.metadata == {"k": "v"}
    assert response.usage is not None
    assert response.usage.output_tokens == 5
    again = await client.responses.retrieve(response.id)
    assert again.to_dict() == response.to_dict()
    items = await client.responses.input_items.list(response.id)
    [item] = items.data
    assert item.type == "message"
    assert item.role == "user"
    assert item.content[0].text == "hi"  # type: ignore[union-attr]
    await client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)


async def test_function_tool_round_trip(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.reset(Script(tokens=[], tool_calls=CALL, finish_reason="tool_calls"))
    async with client.responses.stream(
        model=MODEL,
        input="weather in Paris?",
        tools=[WEATHER],
    ) as stream:
        events = checked([event async for event in stream])
        first = await stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    [call] = first.output
    assert call.type == "function_call"
    assert (call.name, call.call_id, call.arguments) == (
        "get_weather",
        "call_1",
        '{"city":"Paris"}',
    )
    sent = upstream.records[-1].body
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["parameters"],
                "strict": False,
            },
        }
    ]
    upstream.reset()
    output: Any = {"type": "function_call_output", "call_id": "call_1", "output": '{"temp":20}'}
    second = await client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[output],
        tools=[WEATHER],
    )
    assert second.output_text == "Hello, world!"
    messages = upstream.records[-1].body["messages"]
    assert messages[0] == {"role": "user", "content": "weather in Paris?"}
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert messages[2] == {"role": "tool", "content": '{"temp":20}', "tool_call_id": "call_1"}


async def test_json_schema_text_format_reaches_the_upstream(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    schema: Any = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    upstream.reset(Script(tokens=['{"a":', '"b"}']))
    response = await client.responses.create(
        model=MODEL,
        input="json please",
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
    )
    assert response.output_text == '{"a":"b"}'
    assert upstream.records[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }


async def test_previous_response_id_over_three_turns(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    previous = None
    for turn in ("one", "two", "three"):
        upstream.reset(Script(tokens=[f"re-{turn}"]))
        response = await client.responses.create(
            model=MODEL, input=turn, previous_response_id=previous, store=True
        )
        previous = response.id
    assert upstream.records[-1].body["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "re-one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "re-two"},
        {"role": "user", "content": "three"},
    ]


async def test_another_keys_response_is_the_same_404_as_an_unknown_one(
    keyed: Keyed, client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    server, keys = keyed
    mine = await client.responses.create(model=MODEL, input="secret", background=True)
    unknown = "resp_" + "0" * 32
    async with aiohttp.ClientSession() as http:
        for rid in (mine.id, unknown):
            bodies = []
            for method, path, body in [
                ("GET", f"/v1/responses/{rid}", None),
                ("GET", f"/v1/responses/{rid}?stream=true", None),
                ("POST", f"/v1/responses/{rid}/cancel", None),
                ("DELETE", f"/v1/responses/{rid}", None),
                ("GET", f"/v1/responses/{rid}/input_items", None),
                ("POST", "/v1/responses", {"input": "x", "previous_response_id": rid}),
            ]:
                async with http.request(
                    method, server.url + path, json=body, headers=bearer(keys.user8)
                ) as answer:
                    assert answer.status == 404, (method, path)
                    bodies.append((await answer.json())["error"]["code"])
            assert bodies == ["response_not_found"] * 6
    assert (await client.responses.retrieve(mine.id)).id == mine.id


async def test_background_stream_resumes_after_n_with_exactly_the_rest(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    words = [f" w{i}" for i in range(30)]
    upstream.reset(Script(tokens=words, delay=0.03))
    stream = await client.responses.create(model=MODEL, input="long", stream=True, background=True)
    first: list[Any] = []
    async for event in stream:
        first.append(event)
        if len(first) == 11:
            break
    await stream.close()  # the client goes away: a background response goes on
    assert first[-1].sequence_number == 10
    rid = first[0].response.id
    assert first[0].response.status == "queued"
    rest = await client.responses.retrieve(rid, stream=True, starting_after=10)
    events = checked([event async for event in rest])
    assert [e.sequence_number for e in events] == list(range(11, 11 + len(events)))
    deltas = [e.delta for e in first + events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "".join(words)
    assert events[-1].type == "response.completed"
    stored = await client.responses.retrieve(rid)
    assert (stored.status, stored.output_text) == ("completed", "".join(words))


async def test_background_without_stream_answers_queued_then_completes(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(delay=0.05))
    response = await client.responses.create(model=MODEL, input="later", background=True)
    assert response.status == "queued"
    assert response.background is True
    for _ in range(100):
        response = await client.responses.retrieve(response.id)
        if response.status == "completed":
            break
        assert response.status == "in_progress"
        await asyncio.sleep(0.05)
    assert response.output_text == "Hello, world!"


async def test_cancel_keeps_the_partial_output(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.reset(Script(tokens=[f" w{i}" for i in range(200)], delay=0.02))
    response = await client.responses.create(model=MODEL, input="long", background=True)
    record = await upstream.next_record()
    await tokens_sent(record, 5)
    cancelled = await client.responses.cancel(response.id)
    RESPONSE.validate_python(cancelled.to_dict())
    assert cancelled.status == "cancelled"
    assert cancelled.output_text.startswith(" w0 w1 w2 w3")
    assert len(record.token_times) < 200
    assert (await client.responses.retrieve(response.id)).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        await client.responses.cancel((await client.responses.create(input="x", model=MODEL)).id)


async def test_a_client_that_leaves_cancels_a_foreground_response(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=["x"] * 500, delay=0.02))
    stream = await client.responses.create(model=MODEL, input="go", stream=True)
    events_seen: list[Any] = []
    async for event in stream:
        events_seen.append(event)
        if event.type == "response.output_text.delta":
            break
    record = await upstream.next_record()
    left = asyncio.get_running_loop().time()
    await stream.close()
    await closed_within(record, left, seconds=1.0)
    rid = events_seen[0].response.id
    for _ in range(100):
        stored = await client.responses.retrieve(rid)
        if stored.status != "in_progress":
            break
        await asyncio.sleep(0.02)
    assert stored.status == "cancelled"
    assert stored.output_text.startswith("x")


async def test_store_false_keeps_nothing(client: AsyncOpenAI) -> None:
    response = await client.responses.create(model=MODEL, input="forget me", store=False)
    assert response.output_text == "Hello, world!"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, input="x", previous_response_id=response.id)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "nope"}, 404, "model"),
        ({"tools": [{"type": "web_search"}]}, 400, "tools[0]"),
        ({"background": True, "store": False}, 400, None),
        ({"input": [{"type": "image_generation_call", "id": "x"}]}, 400, "input[0]"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, 400, None),
        ({"max_output_tokens": 0}, 400, "max_output_tokens"),
        ({"previous_response_id": "not-an-id"}, 400, "previous_response_id"),
    ],
)
async def test_bad_requests_fail_alone_with_a_clear_4xx(
    keyed: Keyed, body: dict[str, Any], status: int, param: str | None
) -> None:
    server, keys = keyed
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + "/v1/responses", json={"input": "x"} | body, headers=bearer(keys.user7)
        ) as answer,
    ):
        assert answer.status == status, await answer.text()
        error = (await answer.json())["error"]
        if param is not None:
            assert error["param"] == param


async def test_a_refused_response_writes_nothing(
    keyed: Keyed, client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    server, keys = keyed
    async with aiohttp.ClientSession() as http:
        async with http.get(
            server.url + "/api/conversations", headers=bearer(keys.user7)
        ) as answer:
            before = (await answer.json())["data"]["items"]
        upstream.reset(Script(status=500))
        with pytest.raises(openai.APIStatusError) as refused:
            await client.responses.create(model=MODEL, input="refused")
        assert refused.value.status_code == 502
        async with http.get(
            server.url + "/api/conversations", headers=bearer(keys.user7)
        ) as answer:
            assert (await answer.json())["data"]["items"] == before


async def test_history_pages_show_items_as_text(
    keyed: Keyed, client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    server, keys = keyed
    upstream.reset(Script(tokens=["Let me look."], tool_calls=CALL, finish_reason="tool_calls"))
    response = await client.responses.create(
        model=MODEL,
        input="weather?",
        tools=[WEATHER],
    )
    assert [item.type for item in response.output] == ["message", "function_call"]
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/conversations", headers=bearer(keys.user7)) as a:
            newest = (await a.json())["data"]["items"][0]
        assert newest["title"] == "weather?"
        url = f"{server.url}/api/conversations/{newest['id']}/messages"
        async with http.get(url, headers=bearer(keys.user7)) as a:
            items = (await a.json())["data"]["items"]
    assert [(m["role"], m["content"]) for m in items] == [
        ("user", "weather?"),
        ("assistant", 'Let me look.\n[function_call get_weather {"city":"Paris"}]'),
    ]


async def test_limits_and_metrics_as_for_chat_completions(keyed: Keyed) -> None:
    server, _ = keyed
    key = await create_key(_DB[0], 9, "--requests-per-minute", "2")
    async with client_for(server, key) as limited:
        raw = await limited.responses.with_raw_response.create(model=MODEL, input="count me")
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-remaining-requests"] == "1"
        await limited.responses.create(model=MODEL, input="again")
        with pytest.raises(openai.RateLimitError) as refused:
            await limited.responses.create(model=MODEL, input="one too many")
        assert refused.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as answer:
        text = await answer.text()
    assert 'streamchat:e2e_request_latency_seconds_count{api="responses"' in text


async def test_a_failure_after_the_start_is_a_failed_response(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(error_after=2))
    stream = await client.responses.create(model=MODEL, input="boom", stream=True)
    events = checked([event async for event in stream])
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.error.code == "server_error"
    assert last.response.output_text == "Hello"
    stored = await client.responses.retrieve(last.response.id)
    assert stored.status == "failed"
    upstream.reset(Script(error_after=2))
    with pytest.raises(openai.APIStatusError) as failed:
        await client.responses.create(model=MODEL, input="boom")
    assert failed.value.status_code == 502


async def test_input_items_pages_and_cancel_of_an_ended_response(client: AsyncOpenAI) -> None:
    given: Any = [
        {"role": "developer", "content": "be kind"},
        {"role": "user", "content": [{"type": "input_text", "text": "a"}]},
        {"type": "message", "role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    response = await client.responses.create(model=MODEL, input=given, background=True)
    newest: Any = await client.responses.input_items.list(response.id, limit=2)
    assert ([item.content[0].text for item in newest.data], newest.has_more) == (["c", "b"], True)
    rest: Any = await client.responses.input_items.list(response.id, after=newest.last_id, limit=5)
    assert [item.content[0].text for item in rest.data] == ["a", "be kind"]
    assert rest.has_more is False
    oldest = await client.responses.input_items.list(response.id, order="asc", limit=1)
    assert oldest.data[0].role == "developer"  # type: ignore[union-attr]
    for _ in range(100):
        if (await client.responses.retrieve(response.id)).status == "completed":
            break
        await asyncio.sleep(0.05)
    ended = await client.responses.cancel(response.id)
    assert ended.status == "completed", "an ended response stays as it ended"


async def test_a_service_key_acts_for_the_uid_it_names(keyed: Keyed, client: AsyncOpenAI) -> None:
    server, keys = keyed
    mine = await client.responses.create(model=MODEL, input="seven's")
    async with client_for(server, keys.service) as service:
        with pytest.raises(openai.BadRequestError):
            await service.responses.retrieve(mine.id)
        found = await service.responses.retrieve(mine.id, extra_query={"uid": 7})
        assert found.id == mine.id
        with pytest.raises(openai.NotFoundError):
            await service.responses.retrieve(mine.id, extra_query={"uid": 8})
        made = await service.responses.create(
            model=MODEL, input="for seven", extra_query={"uid": 7}
        )
    assert (await client.responses.retrieve(made.id)).output_text == "Hello, world!"


async def test_deleting_a_running_background_response_stops_it(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=[f" w{i}" for i in range(300)], delay=0.02))
    response = await client.responses.create(model=MODEL, input="long", background=True)
    record = await upstream.next_record()
    await tokens_sent(record, 3)
    await client.responses.delete(response.id)
    await asyncio.wait_for(record.closed.wait(), timeout=2)
    await asyncio.sleep(0.5)  # its end is written after the delete: it must not come back
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.input_items.list(response.id)
