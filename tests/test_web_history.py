"""The page's sidebar against the real history endpoints: list, continue, reopen, page."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import aiohttp
from playwright.async_api import Page

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .webpage import TICK, ChatPage

_uids = itertools.count(int(uuid.uuid4().int % 1_000_000) * 1000 + 1000)


def fresh_uid() -> int:
    """A uid no other test (nor an earlier run on a reused database) has conversations under."""
    return next(_uids)


async def test_sidebar_lists_conversations_and_reopens_one(
    page: Page, server: ServerProcess, upstream: FakeUpstream
) -> None:
    chat = ChatPage(page, server.url)
    await chat.open()
    await chat.set_uid(fresh_uid())
    await page.wait_for_selector("#conversations-note:has-text('No conversations yet.')")

    upstream.reset(Script(tokens=["Paris", "."]))
    await chat.send("capital of France?")
    await chat.wait_settled()
    upstream.reset(Script(tokens=["About ", "2.1 million", "."]))
    await chat.send("and its population?")
    await chat.wait_settled(answers=2)
    sent = upstream.records[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"], "the same conversation"
    await page.wait_for_function(
        "() => document.querySelectorAll('#conversations .title').length === 1"
    )

    await page.click("#new-chat")
    assert await chat.bubbles() == []
    upstream.reset(Script(tokens=["Blue", "."]))
    await chat.send("colour of the sky?")
    await chat.wait_settled()
    await page.wait_for_function(
        "() => document.querySelectorAll('#conversations .title').length === 2"
    )
    assert await chat.conversations() == ["colour of the sky?", "capital of France?"]
    current = page.locator("#conversations button[aria-current]")
    assert await current.locator(".title").inner_text() == "colour of the sky?"

    await page.click("#conversations button:has-text('capital of France?')")
    expected = [
        ("user", "capital of France?"),
        ("assistant", "Paris."),
        ("user", "and its population?"),
        ("assistant", "About 2.1 million."),
    ]
    await page.wait_for_function("() => document.querySelectorAll('#messages .msg').length === 4")
    assert await chat.bubbles() == expected

    # The conversation on screen is remembered across a reload.
    await page.reload()
    await page.wait_for_function("() => document.querySelectorAll('#messages .msg').length === 4")
    assert await chat.bubbles() == expected


async def test_reopening_a_conversation_whose_answer_is_still_streaming_follows_it(
    page: Page, start_server: StartServer, upstream: FakeUpstream
) -> None:
    patient = await start_server(detach_grace_seconds="10", ping_seconds="1")
    tokens = [f"s{i:02d} " for i in range(20)]
    upstream.reset(Script(tokens=tokens, delay=TICK))
    chat = ChatPage(page, patient.url)
    await chat.open()
    await chat.set_uid(fresh_uid())
    await chat.send("a long one")
    await chat.wait_for_text(len("s00 s01 s02"))
    await page.click("#new-chat")
    await page.click("#conversations button:has-text('a long one')")
    await page.wait_for_selector("#messages .msg.assistant")
    assert await chat.wait_settled() == "complete"
    assert await chat.bubbles() == [("user", "a long one"), ("assistant", "".join(tokens).strip())]
    assert len(upstream.records) == 1


async def test_sidebar_shows_more_conversations_a_page_at_a_time(
    http: aiohttp.ClientSession, page: Page, start_server: StartServer
) -> None:
    quick = await start_server(provider="echo", echo_delay_ms="0")
    uid = fresh_uid()
    for n in range(32):
        async with http.post(quick.url + "/api/chat", json={"uid": uid, "message": f"q{n}"}) as r:
            await r.read()
    chat = ChatPage(page, quick.url)
    await chat.open()
    await chat.set_uid(uid)
    await page.wait_for_selector("#more-conversations", state="visible")
    titles = await chat.conversations()
    assert titles == [f"q{n}" for n in range(31, 1, -1)]
    await page.click("#more-conversations")
    await page.wait_for_selector("#more-conversations", state="hidden")
    assert await chat.conversations() == [f"q{n}" for n in range(31, -1, -1)]


def corrupt(database: Path) -> None:
    """The disk went bad under a SQLite database: its file, write-ahead log and shared memory."""
    for path in database.parent.glob(database.name + "*"):
        path.write_bytes(b"this is not a database" * 512)


async def test_sidebar_says_when_history_cannot_be_loaded(
    page: Page, start_server: StartServer, tmp_path: Path
) -> None:
    database = tmp_path / "broken.db"
    broken = await start_server(database_url=f"sqlite+aiosqlite:///{database}")
    chat = ChatPage(page, broken.url)
    await chat.open()
    await page.wait_for_selector("#conversations-note:has-text('No conversations yet.')")
    corrupt(database)
    await chat.set_uid(fresh_uid())
    await page.wait_for_function(
        "() => document.getElementById('conversations-note').textContent.startsWith('Could not')"
    )
    note = await page.locator("#conversations-note").inner_text()
    assert note == "Could not load conversations: 数据库暂时不可用,请稍后再试"
