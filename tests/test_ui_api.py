"""The UI API's edges on real servers: bounds, refusals that write nothing, owners, 204s.

The SDK's own client is in tests/test_ui_js.py; these speak HTTP directly, because what they
check (a 4xx and its message, another key's 404) is below what the SDK shows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from .conftest import StartServer
from .dbs import Databases, DatabaseSettings
from .fakeupstream import FakeUpstream, Script
from .keyring import Keys, bearer, make_keys
from .scrape import scrape, value
from .servers import ServerProcess
from .test_ui_js import new_chat

Keyed = tuple[ServerProcess, Keys, DatabaseSettings]
_KEYED: dict[str, Keyed] = {}


def body(chat_id: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}
    return {"id": chat_id, "messages": [message], "trigger": "submit-message", **extra}


async def post(
    http: aiohttp.ClientSession, url: str, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.post(url, json=payload, headers=headers or {}) as response:
        if response.content_type == "text/event-stream":
            await response.read()
            return response.status, None
        return response.status, await response.json()


@pytest_asyncio.fixture
async def keyed(db_kind: str, databases: Databases, start_server: StartServer) -> Keyed:
    """A server with keys on, on each kind of database (made once per kind)."""
    if db_kind not in _KEYED:
        db = await databases.new(db_kind)
        keys = await make_keys(db)
        server = await start_server(auth="keys", provider="echo", echo_delay_ms="20", **db)
        _KEYED[db_kind] = (server, keys, db)
    return _KEYED[db_kind]


def _too_many_parts() -> dict[str, Any]:
    parts = [{"type": "step-start"}] * 1001
    return {"id": new_chat(), "messages": [{"id": "u1", "role": "user", "parts": parts}]}


def _bad(**change: Any) -> dict[str, Any]:
    return {**body(new_chat()), **change}


@pytest.mark.parametrize(
    ("payload", "status", "says"),
    [
        (_bad(id="no spaces"), 400, "id"),
        (_bad(id="x" * 65), 400, "id"),
        ({"id": "a-chat"}, 400, "messages is required"),
        (_bad(trigger="resume-stream"), 400, "trigger"),
        (_bad(messageId="u1"), 400, "editing an earlier message"),
        (_bad(messages=[]), 400, "the last message must be the user's"),
        (_bad(messages=[{"id": "a", "role": "assistant", "parts": []}]), 400, "the user's"),
        (body(new_chat(), text="   "), 400, "message is required"),
        (body(new_chat(), text="x" * 32_001), 413, "at most 32000 characters"),
        (_bad(messages=[{"id": "i" * 257, "role": "user", "parts": []}]), 400, "id"),
        (_too_many_parts(), 400, "parts"),
        (_bad(messages=[{"id": "u", "role": "user", "parts": []}] * 10_001), 400, "messages"),
        (
            _bad(messages=[{"id": "u", "role": "user", "parts": [{"type": "file", "url": "x"}]}]),
            400,
            "file parts are not supported",
        ),
        (_bad(trigger="regenerate-message"), 404, "not found"),
    ],
)
async def test_a_bad_request_is_a_4xx_and_writes_nothing(
    server: ServerProcess,
    upstream: FakeUpstream,
    http: aiohttp.ClientSession,
    payload: dict[str, Any],
    status: int,
    says: str,
) -> None:
    url = f"{server.url}/api/ui/chat?uid=7"
    got, answer = await post(http, url, payload, {"Accept-Language": "en"})
    assert (got, says in answer["message"]) == (status, True), answer
    assert upstream.records == []
    if isinstance(payload.get("id"), str) and len(payload["id"]) <= 64 and " " not in payload["id"]:
        async with http.get(f"{server.url}/api/ui/chat/{payload['id']}?uid=7") as response:
            assert response.status == 404, "the refused request made no chat"


async def test_a_refused_first_message_leaves_no_chat(
    server: ServerProcess, upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    upstream.reset(Script(status=500))
    chat_id = new_chat()
    got, _ = await post(http, f"{server.url}/api/ui/chat?uid=7", body(chat_id))
    assert got == 502
    async with http.get(f"{server.url}/api/ui/chat/{chat_id}?uid=7") as response:
        assert response.status == 404


async def test_a_refused_regenerate_keeps_the_old_answer(
    server: ServerProcess, upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    chat_id = new_chat()
    url = f"{server.url}/api/ui/chat?uid=7"
    assert (await post(http, url, body(chat_id)))[0] == 200
    upstream.reset(Script(status=500))
    got, _ = await post(http, url, body(chat_id, trigger="regenerate-message"))
    assert got == 502
    async with http.get(f"{server.url}/api/ui/chat/{chat_id}?uid=7") as response:
        stored = await response.json()
    assert [m["parts"][0]["text"] for m in stored] == ["hi", "Hello, world!"]


async def test_regenerate_while_an_answer_runs_is_refused(
    server: ServerProcess, upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    upstream.reset(Script(tokens=["a "] * 40, delay=0.05))
    chat_id = new_chat()
    url = f"{server.url}/api/ui/chat?uid=7"
    async with http.post(url, json=body(chat_id)) as running:
        assert running.status == 200
        await running.content.readline()
        got, answer = await post(
            http, url, body(chat_id, trigger="regenerate-message"), {"Accept-Language": "en"}
        )
        assert got == 400
        assert "stop it first" in answer["message"]
        stop = f"{server.url}/api/ui/chat/{chat_id}/stop?uid=7"
        assert (await post(http, stop, None))[1]["data"]["stopped"] is True
        await running.read()


async def test_resume_is_204_when_nothing_runs_and_for_a_chat_not_yet_begun(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    chat_id = new_chat()
    assert (await post(http, f"{server.url}/api/ui/chat?uid=7", body(chat_id)))[0] == 200
    async with http.get(f"{server.url}/api/ui/chat/{chat_id}/stream?uid=7") as response:
        assert response.status == 204
    # useChat with `resume: true` asks on a new chat's first page load: not an error.
    async with http.get(f"{server.url}/api/ui/chat/{new_chat()}/stream?uid=7") as response:
        assert response.status == 204
    async with http.get(f"{server.url}/api/ui/chat/{chat_id}/stream") as response:
        assert response.status == 400, "without keys, the uid is the request's to name"


async def test_another_keys_chat_is_a_404_on_every_route(
    keyed: Keyed, http: aiohttp.ClientSession
) -> None:
    server, keys, _ = keyed
    chat_id = new_chat()
    url = f"{server.url}/api/ui/chat"
    seven, eight = bearer(keys.user7), bearer(keys.user8)
    assert (await post(http, url, body(chat_id, text="seven's secret"), seven))[0] == 200
    running = await http.post(url, json=body(chat_id, text="x " * 300), headers=seven)
    await running.content.readline()  # 7's answer is running: there is a stream
    # Another key's chat is what an unknown chat is: 404, and for the resume, which useChat
    # asks on a new chat's first load, 204.
    routes = [
        ("GET", f"{url}/{chat_id}", None, 404),
        ("GET", f"{url}/{chat_id}/stream", None, 204),
        ("POST", f"{url}/{chat_id}/stop", None, 404),
        ("POST", url, body(chat_id, trigger="regenerate-message"), 404),
    ]
    for method, route, payload, status in routes:
        for headers, acting in ((eight, ""), (bearer(keys.service), "?uid=8")):
            target = route + acting
            async with http.request(method, target, json=payload, headers=headers) as response:
                assert response.status == status, (method, target)
    async with http.get(f"{url}/{chat_id}/stream", headers=seven) as response:
        assert response.status == 200, "7's own answer is resumed"
    async with http.post(f"{url}/{chat_id}/stop", headers=seven) as response:
        assert (await response.json())["data"]["stopped"] is True
    await running.read()
    running.close()
    unknown = f"{url}/{new_chat()}"
    async with http.get(unknown, headers=seven) as response:
        assert response.status == 404
    # The same id is another chat of user 8's own; 7's is untouched, and the service key
    # acting for 7 sees it.
    assert (await post(http, url, body(chat_id, text="eight's"), eight))[0] == 200
    async with http.get(f"{url}/{chat_id}?uid=7", headers=bearer(keys.service)) as response:
        stored = await response.json()
    assert stored[0]["parts"][0]["text"] == "seven's secret"
    async with http.get(f"{url}/{chat_id}", headers=eight) as response:
        assert (await response.json())[0]["parts"][0]["text"] == "eight's"


async def test_ui_answers_are_labelled_ui_in_the_metrics(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    assert (await post(http, f"{server.url}/api/ui/chat?uid=7", body(new_chat())))[0] == 200
    after = await scrape(http, server.url)
    assert value(after, "streamchat:time_to_first_token_seconds_count", api="ui") >= 1
    assert value(after, "streamchat:e2e_request_latency_seconds_count", api="ui") >= 1


async def test_the_ui_api_counts_against_the_same_limits_and_a_429_writes_nothing(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(provider="echo", echo_delay_ms="1", limit_requests_per_minute="2")
    url = f"{server.url}/api/ui/chat?uid=9"
    first, second, third = new_chat(), new_chat(), new_chat()
    assert (await post(http, url, body(first)))[0] == 200
    async with http.post(url, json=body(second)) as response:
        assert response.status == 200
        assert response.headers["x-ratelimit-limit-requests"] == "2"
        await response.read()
    async with http.post(url, json=body(third)) as response:
        assert response.status == 429
        assert "Retry-After" in response.headers
    async with http.get(f"{server.url}/api/ui/chat/{third}?uid=9") as response:
        assert response.status == 404, "the refused request made no chat"


async def test_the_last_message_alone_may_stand_for_the_chat(
    server: ServerProcess, upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    # What docs/ai-sdk.md's prepareSendMessagesRequest sends: `message`, not `messages`.
    chat_id = new_chat()
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "alone"}]}
    payload = {"id": chat_id, "message": message, "trigger": "submit-message"}
    assert (await post(http, f"{server.url}/api/ui/chat?uid=7", payload))[0] == 200
    assert upstream.records[0].body["messages"] == [{"role": "user", "content": "alone"}]


async def test_two_first_messages_at_once_make_one_chat(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    chat_id = new_chat()
    url = f"{server.url}/api/ui/chat?uid=7"
    got = await asyncio.gather(*(post(http, url, body(chat_id, text=f"m{i}")) for i in range(4)))
    assert [status for status, _ in got] == [200] * 4
    async with http.get(f"{server.url}/api/conversations?uid=7&limit=100") as response:
        titles = [c["title"] for c in (await response.json())["data"]["items"]]
    async with http.get(f"{server.url}/api/ui/chat/{chat_id}?uid=7") as response:
        stored = await response.json()
    assert sorted(m["parts"][0]["text"] for m in stored if m["role"] == "user") == [
        "m0",
        "m1",
        "m2",
        "m3",
    ]
    assert sum(title in {"m0", "m1", "m2", "m3"} for title in titles) == 1
