"""Forwarded client addresses are believed only from STREAMCHAT_TRUSTED_PROXIES (issue 23,
item 7): uvicorn believed any loopback client's X-Forwarded-For, so a forged address reached
the access log."""

from __future__ import annotations

import aiohttp

from .conftest import StartServer

FORGED = "203.0.113.77"


async def test_a_forged_forwarded_address_never_reaches_the_log(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo")
    async with http.get(server.url + "/hello", headers={"X-Forwarded-For": FORGED}) as response:
        assert response.status == 200
        trace = response.headers["Trace-Id"]
    line = await server.logged(trace, '"GET /hello"')
    assert FORGED not in line
    assert "127.0.0.1:" in line


async def test_a_listed_proxys_forwarded_address_is_the_client(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", trusted_proxies="127.0.0.1")
    async with http.get(server.url + "/hello", headers={"X-Forwarded-For": FORGED}) as response:
        assert response.status == 200
        trace = response.headers["Trace-Id"]
    line = await server.logged(trace, '"GET /hello"')
    assert FORGED in line
