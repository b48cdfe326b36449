"""Auth off behind a proxy never happens silently (issue 23, item 1), through a real nginx
running deploy/nginx.conf as shipped; and `*` in STREAMCHAT_CORS_ORIGINS without keys is
refused at start-up (item 6)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from .conftest import StartServer
from .dbs import Databases
from .keyring import bearer, create_key
from .nginxproc import DEPLOY_CONF, NginxProcess
from .servers import ServerProcess
from .sseclient import FrameReader, events

ROOT = Path(__file__).resolve().parent.parent


async def _through(server: ServerProcess) -> NginxProcess:
    proxy = NginxProcess(server.port)
    await proxy.start()
    return proxy


async def test_auth_off_by_default_refuses_whatever_comes_through_the_shipped_nginx(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", echo_delay_ms="1")
    async with http.post(server.url + "/api/chat", json={"uid": 7, "message": "mine"}) as mine:
        assert mine.status == 200  # on the machine itself, as before
        await mine.read()
    proxy = await _through(server)
    try:
        # The attack of the issue: the client's Host passes through, so it looks local.
        for method, path in (
            ("GET", "/api/conversations?uid=7"),
            ("POST", "/api/chat"),
            ("DELETE", "/api/conversations/x?uid=7"),
            ("GET", "/v1/models"),
        ):
            async with http.request(
                method,
                proxy.url + path,
                json={"uid": 7, "message": "hi"} if method == "POST" else None,
                headers={"Host": "localhost", "Accept-Language": "en"},
            ) as response:
                body = await response.text()
                assert response.status == 403, (method, path, body)
                assert "STREAMCHAT_AUTH=keys" in body
        async with http.get(proxy.url + "/healthz") as health:
            assert health.status == 200  # the open routes stay open
    finally:
        proxy.stop()
        proxy.remove()
    # Without forwarded headers, a Host naming another port than ours came through a proxy
    # (or a port forward) as well.
    async with http.get(
        server.url + "/api/conversations?uid=7", headers={"Host": "localhost:80"}
    ) as ported:
        assert ported.status == 403
        assert "STREAMCHAT_AUTH=keys" in await ported.text()
    async with http.get(
        server.url + "/api/conversations?uid=7", headers={"X-Forwarded-For": "203.0.113.9"}
    ) as forwarded:
        assert forwarded.status == 403


async def test_explicit_auth_off_serves_the_proxy_and_says_so_loudly(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", echo_delay_ms="1", auth="off")
    assert "AUTH IS OFF ON 127.0.0.1" in server.log()
    proxy = await _through(server)
    try:
        async with http.post(
            proxy.url + "/api/chat", json={"uid": 7, "message": "through"}
        ) as response:
            assert response.status == 200
            got = events(await FrameReader(response).all())
            assert got[-1]["type"] == "end"
    finally:
        proxy.stop()
        proxy.remove()


async def test_keys_through_the_shipped_nginx(
    http: aiohttp.ClientSession, start_server: StartServer, databases: Databases
) -> None:
    db = await databases.new("sqlite")
    key = await create_key(db, 7)
    server = await start_server(provider="echo", echo_delay_ms="1", auth="keys", **db)
    proxy = await _through(server)
    try:
        async with http.get(proxy.url + "/api/conversations") as anonymous:
            assert anonymous.status == 401
        async with http.get(proxy.url + "/api/conversations", headers=bearer(key)) as own:
            assert own.status == 200
    finally:
        proxy.stop()
        proxy.remove()


def test_the_shipped_deployment_uses_keys() -> None:
    nginx = DEPLOY_CONF.read_text("utf-8")
    assert "STREAMCHAT_AUTH=keys" in nginx
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text("utf-8")
    assert re.search(r"STREAMCHAT_AUTH: keys", compose)
    deploy = (ROOT / "docs" / "deploy.md").read_text("utf-8")
    assert "STREAMCHAT_AUTH=keys" in deploy
    # Its check commands send a key.
    for line in deploy.splitlines():
        if line.lstrip().startswith("curl") and "/api/" in line:
            assert "Authorization: Bearer" in line, line


async def test_any_origin_without_keys_is_refused_at_start_up(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    refused = ServerProcess({"STREAMCHAT_PROVIDER": "echo", "STREAMCHAT_CORS_ORIGINS": "*"})
    try:
        proc = refused.spawn()
        assert proc.wait(30) == 2
        log = refused.log()
        assert "STREAMCHAT_CORS_ORIGINS=*" in log
        assert "STREAMCHAT_AUTH=keys" in log
    finally:
        refused.log_path.unlink(missing_ok=True)
    # With keys, a page of any origin still needs one: allowed.
    server = await start_server(provider="echo", auth="keys", cors_origins="*")
    async with http.get(server.url + "/healthz") as health:
        assert health.status == 200
