"""Who is asking (DESIGN.md §7): API keys on real servers, on SQLite and PostgreSQL.

Every route of the route table without a key, with a made-up key and with a revoked one;
another user's key on each of a user's things; a service key acting for two users; the
official `openai` client with a key; what the database keeps of a key.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio

from streamchat.access.keys import key_hash
from streamchat.config import Settings
from streamchat.server.app import create_app
from streamchat.server.routetable import rows

from .conftest import StartServer
from .dbs import Databases, DatabaseSettings, row_counts
from .keyring import Keys, bearer, create_key, make_keys, streamchat
from .servers import ServerProcess
from .sseclient import FrameReader, take_events

# An answer of 60 words, 50 ms apart: long enough to follow and cancel while it runs.
LONG = " ".join(f"w{i}" for i in range(60))


Keyed = tuple[ServerProcess, Keys, DatabaseSettings]
_KEYED: dict[str, Keyed] = {}


@pytest_asyncio.fixture
async def keyed(db_kind: str, databases: Databases, start_server: StartServer) -> Keyed:
    """A server with keys on, on each kind of database, and its keys (made once per kind)."""
    if db_kind not in _KEYED:
        db = await databases.new(db_kind)
        keys = await make_keys(db)
        server = await start_server(
            auth="keys", provider="echo", echo_delay_ms="50", detach_grace_seconds="5", **db
        )
        _KEYED[db_kind] = (server, keys, db)
    return _KEYED[db_kind]


def _route_table(directory: Path) -> list[tuple[str, str]]:
    """(method, path with sample parameters) of every route of the app."""
    url = f"sqlite+aiosqlite:///{directory}/routes.db"
    app = create_app(Settings(provider="echo", database_url=url))
    table = []
    for _, methods, route, _, _ in rows(app.routes, ":0", ""):
        path = re.sub(r"\{[^}]+\}", "x1", route).replace("/*", "/index.html")
        table += [(method, path) for method in methods.split(",")]
    return table


async def _status(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
    async with http.request(method, url, headers=headers, json={}) as response:
        body = await response.json() if "json" in response.content_type else None
        return response.status, body, dict(response.headers)


async def test_every_protected_route_refuses_no_key_a_bad_key_and_a_revoked_one(
    http: aiohttp.ClientSession,
    keyed: Keyed,
    tmp_path: Path,
) -> None:
    server, keys, _ = keyed
    table = _route_table(tmp_path)
    protected = [(m, p) for m, p in table if p.startswith(("/api/", "/v1"))]
    assert ("POST", "/api/chat") in protected
    assert ("POST", "/v1/chat/completions") in protected
    refusals = [{}, bearer("sc-madeup-madeup-madeup-madeup-madeup-1234"), bearer(keys.revoked)]
    for method, path in protected:
        for headers in refusals:
            status, body, response_headers = await _status(http, method, server.url + path, headers)
            assert status == 401, (method, path, headers)
            assert response_headers["WWW-Authenticate"] == "Bearer"
            assert body is not None
            if path.startswith("/v1"):
                assert body["error"]["code"] == "invalid_api_key", body
            else:
                assert body["code"] == 61, body
    for method, path in table:
        if (method, path) not in protected:
            status, _, _ = await _status(http, method, server.url + path, {})
            assert status != 401, (method, path)


async def _chat(
    http: aiohttp.ClientSession, server: ServerProcess, key: str, body: dict[str, Any]
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    response = await http.post(server.url + "/api/chat", json=body, headers=bearer(key))
    assert response.status == 200, await response.text()
    [start] = await take_events(FrameReader(response), 1)
    return response, start


async def test_another_users_key_gets_404_for_everything_and_the_owners_data_stays(
    http: aiohttp.ClientSession, keyed: Keyed
) -> None:
    server, keys, _ = keyed
    response, start = await _chat(http, server, keys.user7, {"message": LONG})
    assert start["uid"] == 7
    conversation, stream = start["conversation_id"], start["stream_id"]
    stranger = bearer(keys.user8)
    url = server.url
    checks = [
        ("GET", f"/api/conversations/{conversation}/messages"),
        ("DELETE", f"/api/conversations/{conversation}"),
        ("GET", f"/api/chat/streams/{stream}"),
        ("POST", f"/api/chat/streams/{stream}/cancel"),
        ("POST", f"/api/chat/streams/{stream}/cancel?uid=8"),
    ]
    for method, path in checks:
        status, body, _ = await _status(http, method, url + path, stranger)
        assert (status, body and body["code"]) == (404, 65), (method, path, body)
    for method, path in [
        ("GET", "/api/conversations?uid=7"),
        ("GET", f"/api/chat/streams/{stream}?uid=7"),
    ]:
        status, body, _ = await _status(http, method, url + path, stranger)
        assert (status, body and body["code"]) == (403, 61), (method, path)
    async with http.post(
        url + "/api/chat", json={"uid": 7, "message": "x"}, headers=stranger
    ) as refused:
        assert refused.status == 403
    async with http.get(url + "/api/conversations", headers=stranger) as listed:
        assert (await listed.json())["data"]["items"] == []
    # The owner still has it all, and can cancel it.
    async with http.post(
        url + f"/api/chat/streams/{stream}/cancel", headers=bearer(keys.user7)
    ) as cancel:
        assert (await cancel.json())["data"]["cancelled"] is True
    response.close()
    async with http.get(url + "/api/conversations", headers=bearer(keys.user7)) as listed:
        assert [c["id"] for c in (await listed.json())["data"]["items"]] == [conversation]
    async with http.get(
        url + f"/api/conversations/{conversation}/messages", headers=bearer(keys.user7)
    ) as messages:
        items = (await messages.json())["data"]["items"]
        assert [m["role"] for m in items] == ["user", "assistant"]


async def test_a_service_key_acts_for_the_uid_each_request_names(
    http: aiohttp.ClientSession, keyed: Keyed
) -> None:
    server, keys, _ = keyed
    for uid in (11, 12):
        response, start = await _chat(http, server, keys.service, {"uid": uid, "message": "hi"})
        assert start["uid"] == uid
        response.close()
    for uid in (11, 12):
        async with http.get(
            server.url + f"/api/conversations?uid={uid}", headers=bearer(keys.service)
        ) as listed:
            items = (await listed.json())["data"]["items"]
            assert [c["uid"] for c in items] == [uid]
    async with http.get(server.url + "/api/conversations", headers=bearer(keys.service)) as none:
        assert (none.status, (await none.json())["code"]) == (400, 51)
    # Following or cancelling, too, a service key names the user it acts for.
    async with http.get(server.url + "/api/chat/streams/x1", headers=bearer(keys.service)) as r:
        assert (r.status, (await r.json())["code"]) == (400, 51)


async def test_refused_requests_write_nothing(http: aiohttp.ClientSession, keyed: Keyed) -> None:
    server, keys, db = keyed
    before = await row_counts(db)
    body = {"uid": 9, "message": "hello"}
    for headers in ({}, bearer(keys.revoked), bearer(keys.user8)):
        async with http.post(server.url + "/api/chat", json=body, headers=headers) as response:
            assert response.status in (401, 403)
    assert await row_counts(db) == before
    # Not even the key's last use: a key refused for another uid stays unused.
    fresh = await create_key(db, 9)
    async with http.post(
        server.url + "/api/chat", json={"uid": 10, "message": "x"}, headers=bearer(fresh)
    ) as refused:
        assert refused.status == 403
    code, out, _ = await streamchat(db, "keys", "list")
    assert code == 0
    row = next(line for line in out.splitlines() if line.split()[1] == fresh[:11] + "…")
    assert row.split()[-2:] == ["-", "-"], row  # LAST USED and REVOKED


async def test_the_openai_client_works_with_a_key_and_refuses_without(
    keyed: Keyed,
) -> None:
    server, keys, _ = keyed
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=keys.user7, max_retries=0)
    answer = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.choices[0].message.content == "hello"
    stranger = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="sc-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await stranger.models.list()
    assert caught.value.code == "invalid_api_key"
    await client.close()
    await stranger.close()


async def test_the_database_keeps_no_key_in_clear(
    start_server: StartServer, databases: Databases
) -> None:
    db = await databases.new("sqlite")
    keys = await make_keys(db)
    path = Path(db["database_url"].removeprefix("sqlite+aiosqlite:///"))
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(FULL)")
    stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for key in (keys.user7, keys.user8, keys.service, keys.revoked):
        assert key.encode() not in stored
        assert key[12:].encode() not in stored  # not even the secret part
        assert key_hash(key).encode() in stored  # what it keeps instead
