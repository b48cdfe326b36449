"""The chat page with API keys on (DESIGN.md §7) and the sidebar's delete button, in Chromium
against a real server: the key prompt, a refused key, a user's own conversations only, resume
with the key, the messages for 403 and 429, and deleting a conversation in both modes."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest_asyncio
from playwright.async_api import Page, Request

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .test_cli import run_streamchat
from .test_web_history import fresh_uid
from .webpage import ARTIFACTS, TICK, ChatPage


@dataclass
class KeyServer:
    """A server with STREAMCHAT_AUTH=keys and the database its keys are made in."""

    server: ServerProcess
    database_url: str

    @property
    def url(self) -> str:
        return self.server.url

    async def new_key(self, uid: int) -> tuple[int, str]:
        """`streamchat keys create --uid N`: the key's id and the key."""
        env = {**os.environ, "STREAMCHAT_DATABASE_URL": self.database_url}
        code, out, err = await run_streamchat("keys", "create", "--uid", str(uid), env=env)
        assert code == 0, err
        found = re.search(r"key (\d+) ", err)
        assert found, err
        return int(found.group(1)), out.strip()

    async def revoke(self, key_id: int) -> None:
        env = {**os.environ, "STREAMCHAT_DATABASE_URL": self.database_url}
        code, _out, err = await run_streamchat("keys", "revoke", str(key_id), env=env)
        assert code == 0, err


@pytest_asyncio.fixture(scope="session")
async def keyed(start_server: StartServer, scratch: str) -> KeyServer:
    database_url = f"sqlite+aiosqlite:///{Path(scratch) / 'web-keys.db'}"
    server = await start_server(
        auth="keys",
        database_url=database_url,
        key_cache_seconds="0.5",
        detach_grace_seconds="10",
        ping_seconds="1",
    )
    return KeyServer(server, database_url)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def chat_with_key(http: aiohttp.ClientSession, url: str, key: str, message: str) -> None:
    """One whole chat through the API, with a user key and no uid."""
    body = {"message": message}
    async with http.post(url + "/api/chat", json=body, headers=bearer(key)) as response:
        assert response.status == 200, await response.text()
        await response.read()


async def titles_of(http: aiohttp.ClientSession, url: str, key: str) -> list[str]:
    """The titles of the key's conversations, newest first, as the API lists them."""
    async with http.get(url + "/api/conversations", headers=bearer(key)) as response:
        assert response.status == 200, await response.text()
        page = await response.json()
    return [item["title"] for item in page["data"]["items"]]


async def use_key(page: Page, key: str) -> None:
    await page.fill("#key", key)
    await page.click("#use-key")


async def key_note(page: Page) -> str:
    await page.wait_for_selector("#key-form", state="visible")
    return await page.locator("#key-note").inner_text()


async def open_keyed(page: Page, url: str) -> ChatPage:
    chat = ChatPage(page, url)
    await chat.open()
    await page.wait_for_selector("#key-form", state="visible")
    return chat


async def delete_in_sidebar(page: Page, title: str) -> None:
    """Delete a conversation as a person does: its × button, then Delete to confirm."""
    item = page.locator("#conversations li").filter(has_text=title)
    await item.hover()
    await item.locator("button.delete").click()
    await item.locator("button.confirm-delete").click()


async def test_with_keys_on_the_page_asks_for_a_key_and_refuses_a_bad_one(
    page: Page, keyed: KeyServer
) -> None:
    await open_keyed(page, keyed.url)
    assert await key_note(page) == "此服务器需要 API 密钥: 请输入您的密钥后开始聊天。"
    assert await page.get_attribute("#key", "type") == "password"
    assert await page.inner_text("#use-key") == "使用密钥"
    assert await page.is_hidden("#uid-box"), "the key says who the user is"
    assert await page.is_hidden("#error"), "the key field says it; no banner besides"
    await page.wait_for_selector("#conversations-note:has-text('使用密钥后即可查看您的会话')")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "key-prompt.png"))

    await use_key(page, "sc-this-is-not-a-key-of-this-server-at-all")
    await page.wait_for_function(
        "() => document.getElementById('key-note').textContent.startsWith('此密钥被拒绝')"
    )
    note = await key_note(page)
    assert note == "此密钥被拒绝: API 密钥 sc-this-is-… 无效或已吊销", note
    assert await page.input_value("#key") == "", "the field is empty again"
    assert await page.evaluate("sessionStorage.getItem('streamchat.key')") is None


async def test_a_good_key_chats_and_lists_only_its_own_conversations(
    page: Page, keyed: KeyServer, http: aiohttp.ClientSession, upstream: FakeUpstream
) -> None:
    mine, theirs = fresh_uid(), fresh_uid()
    _, my_key = await keyed.new_key(mine)
    _, their_key = await keyed.new_key(theirs)
    upstream.reset(Script(tokens=["ok"]))
    await chat_with_key(http, keyed.url, my_key, "mine, from the API")
    upstream.reset(Script(tokens=["ok"]))
    await chat_with_key(http, keyed.url, their_key, "theirs, from the API")

    chat = await open_keyed(page, keyed.url)
    await use_key(page, my_key)
    await page.wait_for_selector("#key-form", state="hidden")
    await page.wait_for_function(
        "() => document.querySelectorAll('#conversations .title').length === 1"
    )
    assert await chat.conversations() == ["mine, from the API"]
    assert await page.inner_text("#who") == f"uid {mine}", "learned from the server"

    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request))
    upstream.reset(Script(tokens=["Hello", " there", "."]))
    await chat.send("hello from the page")
    assert await chat.wait_settled() == "complete"
    assert await chat.answer_text() == "Hello there."
    posts = [r for r in sent if r.url.endswith("/api/chat") and r.method == "POST"]
    assert len(posts) == 1
    assert await posts[0].header_value("authorization") == f"Bearer {my_key}"
    assert posts[0].post_data_json == {"message": "hello from the page"}, "no uid with a key"
    for request in sent:
        if "/api/" in request.url:
            assert await request.header_value("authorization") == f"Bearer {my_key}", request.url
    await page.wait_for_function(
        "() => document.querySelectorAll('#conversations .title').length === 2"
    )
    assert await chat.conversations() == ["hello from the page", "mine, from the API"]

    # The key is the tab's: in sessionStorage, never in localStorage.
    assert await page.evaluate("sessionStorage.getItem('streamchat.key')") == my_key
    stored = await page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
    assert my_key not in stored

    # A reload keeps the key (and the conversation on screen).
    await page.reload()
    await page.wait_for_function("() => document.querySelectorAll('#messages .msg').length === 2")
    assert await page.is_hidden("#key-form")
    assert await chat.conversations() == ["hello from the page", "mine, from the API"]

    await delete_in_sidebar(page, "mine, from the API")
    await page.wait_for_function(
        "() => document.querySelectorAll('#conversations .title').length === 1"
    )
    assert await chat.conversations() == ["hello from the page"]
    assert await chat.bubbles() == [
        ("user", "hello from the page"),
        ("assistant", "Hello there."),
    ], "another conversation was deleted: the one on screen stays"
    assert await titles_of(http, keyed.url, my_key) == ["hello from the page"]
    assert await titles_of(http, keyed.url, their_key) == ["theirs, from the API"], "untouched"


async def test_with_a_key_a_reload_mid_answer_resumes_with_the_key(
    page: Page, keyed: KeyServer, upstream: FakeUpstream
) -> None:
    _, key = await keyed.new_key(fresh_uid())
    tokens = [f"k{i:02d} " for i in range(20)]
    upstream.reset(Script(tokens=tokens, delay=TICK))
    chat = await open_keyed(page, keyed.url)
    await use_key(page, key)
    await chat.send("count with a key")
    await chat.wait_for_text(len("k00 k01 k02"))
    resumed: list[Request] = []
    page.on("request", lambda r: resumed.append(r) if "/api/chat/streams/" in r.url else None)
    await page.reload()
    assert await chat.wait_settled() == "complete"
    assert await chat.answer_text() == "".join(tokens).strip()
    assert len(upstream.records) == 1, "the generation went on; it was not started again"
    assert len(resumed) == 1
    assert await resumed[0].header_value("authorization") == f"Bearer {key}"


async def test_a_revoked_key_shows_the_message_and_the_key_field_again(
    page: Page, keyed: KeyServer, upstream: FakeUpstream
) -> None:
    key_id, key = await keyed.new_key(fresh_uid())
    chat = await open_keyed(page, keyed.url)
    await use_key(page, key)
    upstream.reset(Script(tokens=["one"]))
    await chat.send("before the revoke")
    assert await chat.wait_settled() == "complete"

    await keyed.revoke(key_id)
    await page.wait_for_timeout(1000)  # the server remembers a key for 0.5 s here
    upstream.reset(Script(tokens=["two"]))
    await chat.send("after the revoke")
    note = await key_note(page)
    assert note.startswith("此密钥被拒绝: API 密钥 sc-"), note
    assert note.endswith("无效或已吊销"), note
    assert await page.input_value("#message") == "after the revoke", "kept to send again"
    assert await page.evaluate("sessionStorage.getItem('streamchat.key')") is None
    assert await page.is_hidden("#change-key")


async def test_the_messages_for_403_and_429(page: Page, keyed: KeyServer, browser_en: Page) -> None:
    mine, theirs = fresh_uid(), fresh_uid()
    _, key = await keyed.new_key(mine)
    describe_answer = """
      async ([url, init]) => {
        const api = await import("/web/api.js");
        const response = await fetch(url, init);
        return api.describe(await api.errorOf(response));
      }
    """
    await open_keyed(page, keyed.url)
    # A real 403: a user key asking for another uid's conversations.
    url = f"/api/conversations?uid={theirs}"
    said = await page.evaluate(describe_answer, [url, {"headers": bearer(key)}])
    assert said == "不允许: 该密钥不能代表其他用户ID"

    # 429 (rate limits): the server's answer, as a Response with its Retry-After.
    too_many = """
      async (retryAfter) => {
        const api = await import("/web/api.js");
        const body = JSON.stringify({ code: 63, message: "busy", data: null });
        const headers = retryAfter === null ? {} : { "Retry-After": retryAfter };
        const response = new Response(body, { status: 429, headers });
        return api.describe(await api.errorOf(response));
      }
    """
    assert await page.evaluate(too_many, "7") == "请求过多,请 7 秒后重试。"
    assert await page.evaluate(too_many, None) == "请求过多,请稍后重试。"
    await browser_en.goto(keyed.url + "/")
    assert await browser_en.evaluate(too_many, "12") == "Too many requests: retry in 12 s."


@pytest_asyncio.fixture
async def browser_en(page: Page) -> AsyncIterator[Page]:
    """A second tab, in an English browser."""
    assert page.context.browser is not None
    context = await page.context.browser.new_context(locale="en-US")
    tab = await context.new_page()
    yield tab
    await context.close()


async def test_with_keys_off_a_conversation_is_deleted_after_confirming(
    page: Page, server: ServerProcess, upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    uid = fresh_uid()
    chat = ChatPage(page, server.url)
    await chat.open()
    await chat.set_uid(uid)
    for question in ["first question", "second question"]:
        await page.click("#new-chat")
        upstream.reset(Script(tokens=["fine"]))
        await chat.send(question)
        await chat.wait_settled()
    await page.wait_for_function(
        "() => document.querySelectorAll('#conversations .title').length === 2"
    )
    assert await page.is_hidden("#key-form")
    assert await page.is_visible("#uid-box")

    # Cancel first: nothing is deleted.
    item = page.locator("#conversations li").filter(has_text="second question")
    await item.hover()
    await item.locator("button.delete").click()
    await item.locator("button.cancel-delete").click()
    assert await item.locator(".confirm").count() == 0
    assert await chat.conversations() == ["second question", "first question"]

    # The conversation on screen is deleted: the chat is cleared too.
    assert await chat.bubbles() == [("user", "second question"), ("assistant", "fine")]
    await delete_in_sidebar(page, "second question")
    await page.wait_for_function(
        "() => document.querySelectorAll('#conversations .title').length === 1"
    )
    assert await chat.conversations() == ["first question"]
    assert await chat.bubbles() == []
    assert await page.evaluate("localStorage.getItem('streamchat.conversation')") is None
    async with http.get(server.url + f"/api/conversations?uid={uid}") as response:
        page_data = await response.json()
    assert [c["title"] for c in page_data["data"]["items"]] == ["first question"]


async def test_a_real_429_shows_the_wait_and_keeps_the_message(
    browser_en: Page, start_server: StartServer, upstream: FakeUpstream
) -> None:
    server = await start_server(limit_requests_per_minute="1", ping_seconds="1")
    chat = ChatPage(browser_en, server.url)
    await chat.open()
    await chat.set_uid(fresh_uid())
    upstream.reset(Script(tokens=["fine"]))
    await chat.send("first question")
    await chat.wait_settled()
    await chat.send("second question")
    await browser_en.wait_for_function(
        "() => /Too many requests: retry in \\d+ s/.test("
        "document.getElementById('error-text').textContent)"
    )
    assert await browser_en.input_value("#message") == "second question"
