"""The admission seam (server/admission.py): one way in for every route.

DirectRoutes answers the two stream-starting routes outside FastAPI's routing; these tests
send the same bad requests to a server with DirectRoutes and to one without it (every route
through FastAPI) and compare what comes back, and check that every route of the route
table is either open by the contract or behind the seam's API prefixes.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from streamchat.access.ticket import api_of
from streamchat.config import Settings
from streamchat.server.app import create_app
from streamchat.server.routetable import rows

from .conftest import StartServer
from .servers import ServerProcess

# Open without a key (DESIGN.md §7); every other route must be under /api/ or /v1/.
OPEN = {
    "/",
    "/hello",
    "/healthz",
    "/readyz",
    "/api.json",
    "/swagger",
    "/swagger/",
    "/swagger/assets/*",
    "/web/*",
    "/favicon.ico",
    "/metrics",
}

_JSON = "application/json"
_CHAT, _V1 = "/api/chat", "/v1/chat/completions"
_RESPONSES, _UI = "/v1/responses", "/api/ui/chat"
_UI_BODY = (
    b'{"id":"c1","messages":[{"id":"m1","role":"user","parts":[{"type":"text","text":"hi"}]}]}'
)
_HI = b'[{"role":"user","content":"hi"}]'
_LONG = b"x" * 40

# (path, body bytes, content type, Accept-Language)
BAD: list[tuple[str, bytes, str | None, str]] = [
    (_CHAT, b"", _JSON, "zh"),
    (_CHAT, b"{", _JSON, "en"),
    (_CHAT, b'{"uid":1,"message":"hi"}', "text/plain", "zh"),
    (_CHAT, b'{"uid":1,"message":"hi"}', None, "en"),
    (_CHAT, b"[1,2]", _JSON, "zh"),
    (_CHAT, b'{"message":"hi"}', _JSON, "en"),
    (_CHAT, b'{"uid":"1","message":"hi"}', _JSON, "zh"),
    (_CHAT, b'{"uid":0,"message":"hi"}', _JSON, "en"),
    (_CHAT, b'{"uid":1,"message":"  "}', _JSON, "zh"),
    (_CHAT, b'{"uid":1,"message":"%b"}' % _LONG, _JSON, "en"),
    (_CHAT, b'{"uid":1,"message":"hi","model":"nope"}', _JSON, "zh"),
    (_CHAT, b'{"uid":1,"message":"hi","conversation_id":"%b"}' % (b"f" * 32), _JSON, "en"),
    (_V1, b"", _JSON, "en"),
    (_V1, b"{", _JSON, "en"),
    (_V1, b'{"messages":[]}', "text/plain", "en"),
    (_V1, b'{"model":"m"}', _JSON, "en"),
    (_V1, b'{"messages":%b,"n":2}' % _HI, _JSON, "en"),
    (_V1, b'{"messages":%b,"model":"nope"}' % _HI, _JSON, "en"),
    (_V1, b'{"messages":[{"role":"user","content":"%b"}]}' % _LONG, _JSON, "en"),
    (_RESPONSES, b"", _JSON, "en"),
    (_RESPONSES, b"{", _JSON, "en"),
    (_RESPONSES, b'{"input":"hi"}', "text/plain", "en"),
    (_RESPONSES, b'{"input":42}', _JSON, "en"),
    (_RESPONSES, b'{"input":"hi","model":"nope"}', _JSON, "en"),
    (_RESPONSES + "?uid=abc", b'{"input":"hi"}', _JSON, "en"),
    (_RESPONSES + "?uid=0", b'{"input":42}', _JSON, "en"),
    (_RESPONSES + "?uid=0", b"{", _JSON, "en"),
    (_RESPONSES + "?uid=", b"", _JSON, "en"),
    (_UI, b"", _JSON, "zh"),
    (_UI, b"{", _JSON, "en"),
    (_UI, b'{"id":"c1","messages":[]}', _JSON, "zh"),
    (_UI, _UI_BODY, "text/plain", "en"),
    (_UI + "?uid=x", _UI_BODY, _JSON, "zh"),
    (_UI + "?uid=1&uid=-5", b'{"id":"c1"}', _JSON, "en"),
]

# Headers that differ between any two responses.
_VARYING = {"date", "trace-id", "server"}


@pytest.fixture(scope="module")
def settings() -> dict[str, str]:
    return {"max_message_chars": "10", "detach_grace_seconds": "0"}


async def _answer(
    http: aiohttp.ClientSession, server: ServerProcess, case: tuple[str, bytes, str | None, str]
) -> tuple[int, bytes, dict[str, str]]:
    path, body, content_type, lang = case
    headers = {"Accept-Language": lang}
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with http.post(server.url + path, data=body, headers=headers) as response:
        kept = {k.lower(): v for k, v in response.headers.items() if k.lower() not in _VARYING}
        return response.status, await response.read(), kept


async def test_bad_requests_answer_alike_through_direct_routes_and_fastapi(
    http: aiohttp.ClientSession, start_server: StartServer, settings: dict[str, str]
) -> None:
    direct = await start_server(**settings)
    through_fastapi = await start_server(**settings, direct_routes="false")
    for case in BAD:
        got = await _answer(http, direct, case)
        expected = await _answer(http, through_fastapi, case)
        assert got == expected, case
        assert 400 <= got[0] < 500, (case, got)


def test_every_route_is_open_by_the_contract_or_behind_the_api_prefixes(
    tmp_path: Any,
) -> None:
    app = create_app(Settings(provider="echo", database_url=f"sqlite+aiosqlite:///{tmp_path}/a.db"))
    routes = {row[2] for row in rows(app.routes, ":0", "")}
    assert routes, "the route table is empty"
    stray = {route for route in routes if api_of(route) is None and route not in OPEN}
    assert not stray, f"routes neither open by the contract nor under /api/ or /v1/: {stray}"
