"""`GET /api/conversations/{id}/messages` a page at a time (issue 23, item 7): the latest 100
by default, older ones with `cursor`; the page still shows a whole long chat."""

from __future__ import annotations

from typing import Any

import aiohttp
from playwright.async_api import Page

from .conftest import StartServer
from .servers import ServerProcess
from .test_web_history import fresh_uid
from .webpage import ChatPage

TURNS = 60  # 120 messages: more than one page


async def _long_chat(http: aiohttp.ClientSession, server: ServerProcess, uid: int) -> str:
    conversation: str | None = None
    for turn in range(TURNS):
        body: dict[str, Any] = {"uid": uid, "message": f"q{turn}"}
        if conversation:
            body["conversation_id"] = conversation
        async with http.post(server.url + "/api/chat", json=body) as response:
            assert response.status == 200
            text = await response.text()
        if conversation is None:
            conversation = text.split('"conversation_id":"')[1].split('"')[0]
    assert conversation is not None
    return conversation


async def _page(
    http: aiohttp.ClientSession, url: str, params: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with http.get(url, params=params) as response:
        return response.status, await response.json()


async def test_messages_come_a_page_at_a_time_newest_page_first(
    http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", echo_delay_ms="0")
    uid = fresh_uid()
    conversation = await _long_chat(http, server, uid)
    url = f"{server.url}/api/conversations/{conversation}/messages"
    status, latest = await _page(http, url, {"uid": str(uid)})
    assert status == 200
    items = latest["data"]["items"]
    assert len(items) == 100  # the documented default page
    assert items[-1]["content"] == f"q{TURNS - 1}"  # the latest answer (echo) is in it
    cursor = latest["data"]["next_cursor"]
    assert cursor
    status, older = await _page(http, url, {"uid": str(uid), "cursor": cursor})
    assert status == 200
    assert older["data"]["next_cursor"] is None
    whole = older["data"]["items"] + items
    assert [m["content"] for m in whole[::2]] == [f"q{t}" for t in range(TURNS)]
    assert [m["role"] for m in whole] == ["user", "assistant"] * TURNS
    status, small = await _page(http, url, {"uid": str(uid), "limit": "7"})
    assert (status, len(small["data"]["items"])) == (200, 7)
    for bad in ("x", "-1", "1" * 40, "１２"):
        status, refused = await _page(http, url, {"uid": str(uid), "cursor": bad})
        assert (status, refused["code"]) == (400, 51), bad
    status, _ = await _page(http, url, {"uid": str(uid), "limit": "501"})
    assert status == 400


async def test_the_page_shows_a_whole_long_chat(
    page: Page, http: aiohttp.ClientSession, start_server: StartServer
) -> None:
    server = await start_server(provider="echo", echo_delay_ms="0")
    uid = fresh_uid()
    await _long_chat(http, server, uid)
    chat = ChatPage(page, server.url)
    await chat.open()
    await chat.set_uid(uid)
    await page.click("#conversations button:has-text('q0')")
    await page.wait_for_function(
        f"() => document.querySelectorAll('#messages .msg').length >= {2 * TURNS}"
    )
    bubbles = await chat.bubbles()
    assert len(bubbles) == 2 * TURNS
    assert bubbles[0] == ("user", "q0")
    assert bubbles[-1] == ("assistant", f"q{TURNS - 1}")
