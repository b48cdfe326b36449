"""The auth modes (DESIGN.md §7): the default by address, the guards of `off`, the loud line,
ownership across two nodes, and the `streamchat keys` command's exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from .conftest import StartServer
from .dbs import Databases
from .fakeupstream import FakeUpstream, Script
from .keyring import bearer, create_key, streamchat
from .nodes import node_env, start_nodes
from .redisserver import SHARED_URL
from .sseclient import FrameReader, take_events

CHAT = {"uid": 3, "message": "hello"}


async def _post(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with http.post(url + "/api/chat", json=CHAT, headers=headers) as response:
        await response.read()
        return response.status


async def test_auth_off_refuses_other_hosts_and_cross_origin_writes(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", echo_delay_ms="1")
    port = server.port
    assert await _post(http, server.url, {}) == 200  # curl, scripts: no Origin
    assert await _post(http, server.url, {"Origin": f"http://127.0.0.1:{port}"}) == 200
    async with http.get(
        server.url + "/api/conversations?uid=3", headers={"Host": "evil.example"}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (403, 61)
    async with http.get(server.url + "/", headers={"Host": f"localhost:{port}"}) as page:
        assert page.status == 200
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port + 1}"):
        assert await _post(http, server.url, {"Origin": origin}) == 403, origin
    async with http.delete(
        server.url + "/api/conversations/x?uid=3", headers={"Origin": "http://evil.example"}
    ) as deleted:
        assert deleted.status == 403
    # Reads from another origin are not refused (the browser keeps their answers from it).
    async with http.get(
        server.url + "/api/conversations?uid=3", headers={"Origin": "http://evil.example"}
    ) as read:
        assert read.status == 200


async def test_listed_origins_may_write_and_get_cors_headers(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(
        provider="echo", echo_delay_ms="1", cors_origins="http://app.example:3000"
    )
    assert await _post(http, server.url, {"Origin": "http://app.example:3000"}) == 200
    async with http.options(
        server.url + "/api/chat",
        headers={
            "Origin": "http://app.example:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    ) as preflight:
        assert preflight.status == 200
        assert preflight.headers["access-control-allow-origin"] == "http://app.example:3000"


def stainless_headers() -> list[str]:
    """The `x-stainless-*` headers the official openai npm package sends, read from it."""
    package = Path(__file__).parent / "js" / "node_modules" / "openai"
    found = set()
    for source in [*package.glob("*.js"), *package.glob("internal/**/*.js")]:
        found |= {
            m.lower() for m in re.findall(r"[Xx]-[Ss]tainless-[A-Za-z-]+", source.read_text())
        }
    assert "x-stainless-retry-count" in found, "the package's layout changed: update this reader"
    return sorted(found)


async def test_a_listed_origin_may_send_what_the_openai_npm_client_sends(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(
        provider="echo", echo_delay_ms="1", cors_origins="http://app.example:3000"
    )
    requested = ["authorization", "content-type", *stainless_headers()]
    async with http.options(
        server.url + "/v1/chat/completions",
        headers={
            "Origin": "http://app.example:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": ",".join(requested),
        },
    ) as preflight:
        assert preflight.status == 200, await preflight.text()
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert set(requested) <= {h.strip() for h in allowed.split(",")}


@pytest.mark.parametrize(
    ("auth", "expected_status", "loud"), [("", 401, False), ("off", 200, True)]
)
async def test_on_another_address_keys_are_the_default_and_off_is_loud(
    http: aiohttp.ClientSession,
    start_server: StartServer,
    auth: str,
    expected_status: int,
    loud: bool,
) -> None:
    settings = {"host": "0.0.0.0", "provider": "echo", "echo_delay_ms": "1"}
    if auth:
        settings["auth"] = auth
    server = await start_server(**settings)
    assert await _post(http, server.url, {}) == expected_status
    assert ("AUTH IS OFF ON 0.0.0.0" in server.log()) is loud


async def test_a_stream_of_one_user_cannot_be_followed_or_cancelled_by_another_on_any_node(
    http: aiohttp.ClientSession, upstream: FakeUpstream, redis_prefix: str
) -> None:
    env = node_env(upstream, SHARED_URL, f"{redis_prefix}owners:", auth="keys")
    db = {"database_url": env["STREAMCHAT_DATABASE_URL"]}
    seven = await create_key(db, 7)
    eight = await create_key(db, 8)
    a, b = await start_nodes(2, env)
    try:
        upstream.reset(Script(tokens=[f"w{i} " for i in range(40)], delay=0.1))
        response = await http.post(
            a.url + "/api/chat", json={"message": "story"}, headers=bearer(seven)
        )
        assert response.status == 200
        [start] = await take_events(FrameReader(response), 1)
        stream = start["stream_id"]
        for node in (a, b):
            async with http.get(
                f"{node.url}/api/chat/streams/{stream}", headers=bearer(eight)
            ) as follow:
                assert follow.status == 404
            async with http.post(
                f"{node.url}/api/chat/streams/{stream}/cancel", headers=bearer(eight)
            ) as cancel:
                assert cancel.status == 404
        async with http.get(
            f"{b.url}/api/chat/streams/{stream}?after=0", headers=bearer(seven)
        ) as own:
            assert own.status == 200
            [delta] = await take_events(FrameReader(own), 1)
            assert delta["index"] == 1
        async with http.post(
            f"{b.url}/api/chat/streams/{stream}/cancel", headers=bearer(seven)
        ) as cancel:
            assert (await cancel.json())["data"]["cancelled"] is True
        response.close()
    finally:
        for node in (a, b):
            node.stop()


async def test_keys_command_exit_codes(databases: Databases) -> None:
    db = await databases.new("sqlite")
    key = await create_key(db, 5, "--name", "ci")
    code, out, err = await streamchat(db, "keys", "list")
    assert code == 0
    assert key not in out
    assert key[:11] + "…" in out
    assert (await streamchat(db, "keys", "revoke", "1"))[0] == 0
    assert (await streamchat(db, "keys", "revoke", "1"))[0] == 1  # already revoked
    assert (await streamchat(db, "keys", "revoke", "99"))[0] == 1
    for bad in (["--uid", "0"], ["--uid", "x"], ["--uid", str(2**63)], []):
        code, _, err = await streamchat(db, "keys", "create", *bad)
        assert code == 2, (bad, err)
    broken = {"database_url": "sqlite+aiosqlite:////nonexistent-dir/x.db"}
    code, _, err = await streamchat(broken, "keys", "list")
    assert code == 3
    assert "database" in err
