"""Hello, the spec, Swagger UI without a CDN, health, the route table, trace ids."""

from __future__ import annotations

import re

import aiohttp

from .servers import ServerProcess


async def test_hello(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    async with http.get(server.url + "/hello") as response:
        assert response.status == 200
        assert await response.text() == "Hello World!"


async def test_openapi_spec_documents_the_chat_contract(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/api.json") as response:
        assert response.status == 200
        spec = await response.json()
    assert spec["openapi"].startswith("3.")
    chat = spec["paths"]["/api/chat"]["post"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    request = spec["components"]["schemas"]["ChatRequest"]
    # uid may be left out with a user key (its own uid): required only by the route.
    assert set(request["required"]) == {"message"}
    assert "uid" in request["properties"]
    assert {"StartEvent", "DeltaEvent", "EndEvent", "ErrorEvent"} <= set(
        spec["components"]["schemas"]
    )
    for path in ("/api/chat/streams/{stream_id}", "/api/chat/streams/{stream_id}/cancel"):
        assert path in spec["paths"]


async def test_swagger_ui_uses_only_local_assets(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/swagger/") as response:
        assert response.status == 200
        html = await response.text()
    assert "/api.json" in html
    references = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: ?'([^']+)'", html)
    assert references
    for reference in references:
        assert not reference.startswith(("http:", "https:", "//")), reference
    for asset in re.findall(r'(?:src|href)="(/swagger/[^"]+)"', html):
        async with http.get(server.url + asset) as response:
            assert response.status == 200, asset
            assert len(await response.read()) > 100


async def test_swagger_without_slash_redirects(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/swagger", allow_redirects=False) as response:
        assert response.status in (301, 307, 308)
        assert response.headers["Location"].endswith("/swagger/")


async def test_health_and_readiness(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    async with http.get(server.url + "/healthz") as response:
        assert response.status == 200
        assert (await response.json())["data"]["status"] == "ok"
    async with http.get(server.url + "/readyz") as response:
        assert response.status == 200
        assert (await response.json())["data"]["status"] == "ready"


async def test_unknown_route_is_404_envelope(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/nope", headers={"Accept-Language": "en"}) as response:
        assert response.status == 404
        assert await response.json() == {"code": 65, "message": "not found", "data": None}


async def test_route_table_is_logged_at_start(server: ServerProcess) -> None:
    log = server.log()
    assert re.search(r"ADDRESS\s*\|\s*METHOD\s*\|\s*ROUTE\s*\|\s*HANDLER\s*\|\s*MIDDLEWARE", log)
    assert re.search(rf":{server.port}\s*\|\s*POST\s*\|\s*/api/chat\s*\|", log)
    assert re.search(r"\|\s*GET\s*\|\s*/hello\s*\|", log)
    assert "swagger ui is serving at address" in log
    assert f"listening on http://127.0.0.1:{server.port}" in log
    assert "setup plugin" not in log  # alembic's import-time chatter


async def test_trace_id_header_and_log_lines(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/hello") as response:
        trace_id = response.headers["Trace-Id"]
    async with http.get(server.url + "/hello") as response:
        assert response.headers["Trace-Id"] != trace_id
    assert re.search(rf"\{{{trace_id}\}} streamchat.access: .*\"GET /hello\" 200", server.log())
    async with http.get(server.url + "/hello", headers={"Trace-Id": "abc-123"}) as response:
        assert response.headers["Trace-Id"] == "abc-123"
