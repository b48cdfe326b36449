"""Conversations kept across requests and crashes: real servers, the fake upstream, and both
databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from .conftest import StartServer
from .dbs import Databases, DatabaseSettings
from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .sseclient import FrameReader, events, take_events
from .tcpproxy import TcpProxy

SLOW = Script(tokens=[f"w{i} " for i in range(40)], delay=0.1)


@pytest_asyncio.fixture
async def server(db_kind: str, databases: Databases, start_server: StartServer) -> ServerProcess:
    """A server on each kind of database (grace 0: a disconnect interrupts at once)."""
    db = await databases.shared(db_kind)
    return await start_server(detach_grace_seconds="0", ping_seconds="1", **db)


@contextlib.asynccontextmanager
async def own_server(upstream: FakeUpstream, **settings: str) -> AsyncIterator[ServerProcess]:
    """A server for this test alone (to kill, or to starve of its database)."""
    env = {"STREAMCHAT_PROVIDER": "openai", "STREAMCHAT_OPENAI_BASE_URL": upstream.base_url}
    env.update({f"STREAMCHAT_{k.upper()}": v for k, v in settings.items()})
    process = ServerProcess(env)
    try:
        await process.start()
        yield process
    finally:
        process.stop()


async def chat(
    http: aiohttp.ClientSession, server: ServerProcess, uid: int, message: str, **body: Any
) -> list[dict[str, Any]]:
    """POST a chat and read its whole stream."""
    payload = {"uid": uid, "message": message, **body}
    async with http.post(server.url + "/api/chat", json=payload) as response:
        assert response.status == 200, await response.text()
        return events(await FrameReader(response).all())


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


async def stored(
    http: aiohttp.ClientSession, server: ServerProcess, conversation_id: str, uid: int
) -> list[dict[str, Any]]:
    """The conversation's messages, through the API."""
    url = f"{server.url}/api/conversations/{conversation_id}/messages?uid={uid}"
    status, body = await get(http, url)
    assert status == 200, body
    assert body["code"] == 0
    assert body["data"]["conversation_id"] == conversation_id
    items: list[dict[str, Any]] = body["data"]["items"]
    return items


async def settled(
    http: aiohttp.ClientSession, server: ServerProcess, conversation_id: str, uid: int
) -> list[dict[str, Any]]:
    """The messages once the last answer is no longer `streaming` (at most 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        items = await stored(http, server, conversation_id, uid)
        if items[-1]["status"] != "streaming" or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.05)


async def open_chat(
    http: aiohttp.ClientSession, server: ServerProcess, uid: int, deltas: int
) -> tuple[aiohttp.ClientResponse, FrameReader, list[dict[str, Any]]]:
    """POST a chat and read its start event and `deltas` delta events."""
    response = await http.post(server.url + "/api/chat", json={"uid": uid, "message": "go on"})
    assert response.status == 200
    reader = FrameReader(response)
    got = await take_events(reader, deltas + 1)
    return response, reader, got


def text_of(got: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in got if e["type"] == "delta")


async def test_second_turn_sends_the_first_to_the_model(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    first = await chat(http, server, 21, "What is 2+2?")
    conversation = first[0]["conversation_id"]
    second = await chat(http, server, 21, "And times 3?", conversation_id=conversation)
    assert second[0]["conversation_id"] == conversation
    assert upstream.records[-1].body["messages"] == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "Hello, world!"},
        {"role": "user", "content": "And times 3?"},
    ]
    items = await stored(http, server, conversation, 21)
    assert [(m["role"], m["content"], m["status"]) for m in items] == [
        ("user", "What is 2+2?", "complete"),
        ("assistant", "Hello, world!", "complete"),
        ("user", "And times 3?", "complete"),
        ("assistant", "Hello, world!", "complete"),
    ]
    answer = items[3]
    assert answer["id"] == second[0]["message_id"]
    assert answer["stream_id"] == second[0]["stream_id"]
    assert answer["model"] == second[0]["model"]
    assert answer["usage"] == second[-1]["usage"]
    status, listed = await get(http, f"{server.url}/api/conversations?uid=21")
    assert status == 200
    assert [(c["id"], c["title"]) for c in listed["data"]["items"]] == [
        (conversation, "What is 2+2?")
    ]


async def test_continuing_a_conversation_that_is_not_yours_is_404(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    conversation = (await chat(http, server, 22, "private"))[0]["conversation_id"]
    upstream.reset()
    for uid, conversation_id in ((23, conversation), (22, "0" * 32)):
        body = {"uid": uid, "message": "let me in", "conversation_id": conversation_id}
        async with http.post(server.url + "/api/chat", json=body) as response:
            assert response.status == 404
            envelope = await response.json()
        assert envelope["code"] == 65
        assert envelope["data"] is None
    assert upstream.records == [], "nothing may be generated for a refused conversation"


async def test_another_uid_cannot_list_read_or_delete(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    conversation = (await chat(http, server, 24, "mine"))[0]["conversation_id"]
    base = f"{server.url}/api/conversations"
    status, body = await get(http, f"{base}?uid=25")
    assert (status, body["data"]["items"]) == (200, [])
    status, body = await get(http, f"{base}/{conversation}/messages?uid=25")
    assert (status, body["code"]) == (404, 65)
    async with http.delete(f"{base}/{conversation}?uid=25") as response:
        assert response.status == 404
        assert (await response.json())["code"] == 65
    assert len(await stored(http, server, conversation, 24)) == 2
    async with http.delete(f"{base}/{conversation}?uid=24") as response:
        assert response.status == 200
        assert await response.json() == {"code": 0, "message": "", "data": None}
    status, body = await get(http, f"{base}/{conversation}/messages?uid=24")
    assert (status, body["code"]) == (404, 65)


async def test_disconnect_keeps_the_partial_answer_as_interrupted(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(SLOW)
    response, _, got = await open_chat(http, server, 26, deltas=3)
    response.close()
    await asyncio.wait_for(upstream.records[-1].closed.wait(), 2)
    answer = (await settled(http, server, got[0]["conversation_id"], 26))[-1]
    assert answer["status"] == "interrupted"
    # What the client saw, and maybe the token or two that came before the server stopped.
    assert answer["content"].startswith(text_of(got))
    assert "".join(SLOW.tokens).startswith(answer["content"])
    assert answer["error"]


async def test_cancel_keeps_the_partial_answer_as_cancelled(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(SLOW)
    response, reader, got = await open_chat(http, server, 27, deltas=2)
    url = f"{server.url}/api/chat/streams/{got[0]['stream_id']}/cancel"
    async with http.post(url) as cancelled:
        assert cancelled.status == 200
    got += events(await reader.all())
    response.close()
    assert got[-1]["finish_reason"] == "cancelled"
    # The end event goes out after the answer is saved: no waiting needed.
    answer = (await stored(http, server, got[0]["conversation_id"], 27))[-1]
    assert (answer["status"], answer["content"], answer["error"]) == (
        "cancelled",
        text_of(got),
        None,
    )


async def test_upstream_error_keeps_the_partial_answer_and_the_error(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(error_after=3))
    got = await chat(http, server, 28, "explode")
    assert got[-1]["type"] == "error"
    answer = (await stored(http, server, got[0]["conversation_id"], 28))[-1]
    assert answer["status"] == "error"
    assert answer["content"] == "Hello,"
    assert answer["error"] == "upstream model failed", "the upstream's text is for the log"
    await server.logged("upstream exploded")


async def test_a_refused_request_writes_nothing(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(status=401))
    async with http.post(server.url + "/api/chat", json={"uid": 29, "message": "hi"}) as response:
        assert response.status == 502
    _, listed = await get(http, f"{server.url}/api/conversations?uid=29")
    assert listed["data"]["items"] == [], "the upstream refused: nothing was asked of the model"


async def test_the_answer_is_saved_while_it_streams(
    http: aiohttp.ClientSession,
    start_server: StartServer,
    databases: Databases,
    db_kind: str,
    upstream: FakeUpstream,
) -> None:
    db = await databases.shared(db_kind)
    server = await start_server(history_save_seconds="2", detach_grace_seconds="0", **db)
    tokens = [f"t{i} " for i in range(71)]
    upstream.reset(Script(tokens=tokens, hang_after=70))  # sends 70, then holds the stream
    response, _, got = await open_chat(http, server, 30, deltas=70)
    conversation, stream_id = got[0]["conversation_id"], got[0]["stream_id"]
    await asyncio.sleep(0.3)
    answer = (await stored(http, server, conversation, 30))[-1]
    # 64 tokens make a save at once, long before the timer (2 s here); it writes the text
    # there is when it is written, which may hold some of the 6 tokens after.
    assert answer["status"] == "streaming"
    assert answer["stream_id"] == stream_id
    assert answer["content"].startswith("".join(tokens[:64]))
    await asyncio.sleep(2.2)
    answer = (await stored(http, server, conversation, 30))[-1]
    assert answer["content"] == "".join(tokens[:70])
    assert answer["status"] == "streaming"
    response.close()


async def test_an_answer_with_nul_is_saved_without_it_and_costs_nobody_else(
    http: aiohttp.ClientSession, server: ServerProcess, upstream: FakeUpstream
) -> None:
    # PostgreSQL stores no NUL in text. An upstream's "\u0000" failed its round of the
    # group commit: the answer stayed `streaming` and empty, and another user's turn in that
    # round was a 503.
    upstream.reset(Script(tokens=["a", "\x00", "b"], delay=0.05))
    got, other = await asyncio.gather(chat(http, server, 41, "nul"), chat(http, server, 42, "x"))
    assert text_of(got) == "a\x00b"  # the stream is the model's, as it came
    for events_, uid in ((got, 41), (other, 42)):
        assert events_[-1]["type"] == "end"
        answer = (await settled(http, server, events_[0]["conversation_id"], uid))[-1]
        assert (answer["status"], answer["content"]) == ("complete", "ab")


async def test_kill_9_mid_answer_then_restart_keeps_what_was_saved(
    http: aiohttp.ClientSession, upstream: FakeUpstream, database: DatabaseSettings
) -> None:
    upstream.reset(Script(tokens=["one ", "two ", "three ", "four "], hang_after=3))
    async with own_server(upstream, **database) as first:
        response, _, got = await open_chat(http, first, 31, deltas=3)
        conversation = got[0]["conversation_id"]
        deadline = time.monotonic() + 3
        while (await stored(http, first, conversation, 31))[-1]["content"] != "one two three ":
            assert time.monotonic() < deadline, "the growing answer was never saved"
            await asyncio.sleep(0.1)
        assert first.proc is not None
        first.proc.kill()
        first.proc.wait()
        response.close()
        async with own_server(upstream, **database) as second:
            question, answer = await stored(http, second, conversation, 31)
    assert (question["content"], question["status"]) == ("go on", "complete")
    assert (answer["status"], answer["content"]) == ("interrupted", "one two three ")
    assert "interrupted" in second.log()


async def probe(http: aiohttp.ClientSession, server: ServerProcess, uid: int) -> tuple[int, int]:
    """A chat's HTTP status and envelope code (0 for a stream)."""
    async with http.post(server.url + "/api/chat", json={"uid": uid, "message": "hi"}) as response:
        if response.status == 200:
            assert events(await FrameReader(response).all())[-1]["type"] == "end"
            return 200, 0
        return response.status, (await response.json())["code"]


async def test_sqlite_locked_by_another_process_is_503_then_recovers(
    http: aiohttp.ClientSession, upstream: FakeUpstream, databases: Databases
) -> None:
    db = await databases.new("sqlite")
    async with own_server(upstream, database_timeout_seconds="0.5", **db) as server:
        assert await probe(http, server, 32) == (200, 0)
        upstream.reset()
        holder = sqlite3.connect(db["database_url"].removeprefix("sqlite+aiosqlite:///"))
        try:
            holder.execute("BEGIN IMMEDIATE")  # another writer that does not let go
            assert await probe(http, server, 32) == (503, 52)
            assert upstream.records == [], "no generation without the question saved"
        finally:
            holder.rollback()
            holder.close()
        assert await probe(http, server, 32) == (200, 0)


async def test_postgres_unreachable_is_503_then_recovers(
    http: aiohttp.ClientSession, upstream: FakeUpstream, databases: Databases
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.restore()
    url = databases.postgres.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    db = await databases.postgres.settings(url)
    try:
        async with own_server(upstream, database_timeout_seconds="2", **db) as server:
            assert await probe(http, server, 33) == (200, 0)
            await proxy.cut()
            upstream.reset()
            assert await probe(http, server, 33) == (503, 52)
            status, body = await get(http, f"{server.url}/api/conversations?uid=33")
            assert (status, body["code"]) == (503, 52)
            status, body = await get(http, f"{server.url}/readyz")
            assert (status, body["code"]) == (503, 52)
            assert body["data"]["checks"] == {
                "accepting": True,
                "provider": True,
                "database": False,
                "streams": True,
                "tasks": True,
                "models": {"gpt-4o-mini": True},  # one check per upstream (DESIGN §10)
            }
            assert upstream.records == []
            await proxy.restore()
            assert await probe(http, server, 33) == (200, 0)
            status, body = await get(http, f"{server.url}/api/conversations?uid=33")
            assert status == 200
            assert len(body["data"]["items"]) == 2
            status, body = await get(http, f"{server.url}/readyz")
            assert (status, body["data"]["checks"]["database"]) == (200, True)
    finally:
        await proxy.cut()


@pytest.mark.timeout(120)
async def test_50_concurrent_chats_on_sqlite_never_see_a_locked_database(
    http: aiohttp.ClientSession, start_server: StartServer, upstream: FakeUpstream
) -> None:
    # A save every 2 tokens instead of 64: as many writers at once as we can make.
    busy = await start_server(history_save_tokens="2", detach_grace_seconds="0")
    tokens = [f"c{i} " for i in range(30)]
    upstream.reset(Script(tokens=tokens, delay=0.01))
    uids = range(1000, 1050)
    results = await asyncio.gather(*(chat(http, busy, uid, f"hello {uid}") for uid in uids))
    for got in results:
        assert got[-1]["type"] == "end", got[-1]
        assert text_of(got) == "".join(tokens)
    for uid, got in zip(uids, results, strict=True):
        question, answer = await stored(http, busy, got[0]["conversation_id"], uid)
        assert question["content"] == f"hello {uid}"
        assert (answer["status"], answer["content"]) == ("complete", "".join(tokens))
    assert "locked" not in busy.log()


async def test_the_history_endpoints_are_in_the_openapi_spec(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    plain = await start_server()
    _, spec = await get(http, plain.url + "/api.json")
    paths = spec["paths"]
    assert set(paths["/api/conversations"]) == {"get"}
    assert set(paths["/api/conversations/{conversation_id}/messages"]) == {"get"}
    assert set(paths["/api/conversations/{conversation_id}"]) == {"delete"}
    schemas = spec["components"]["schemas"]
    assert {"ConversationPage", "ConversationOut", "MessageList", "MessageOut"} <= set(schemas)
    assert "stream_id" in schemas["MessageOut"]["properties"]
