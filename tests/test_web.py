"""The chat page in real headless Chromium against a real server: what a person sees and does."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from playwright.async_api import Browser, Page

from streamchat.routes.web import WEB_DIR

from .conftest import StartServer
from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .webpage import ARTIFACTS, TICK, ChatPage, assert_progressive, run_seed_client

MARKDOWN_TOKENS = [
    "## Plan\n\n",
    "Steps:\n\n",
    "- read **the",
    " docs**\n",
    "- write `code`\n",
    "- test it\n\n",
    "```python\n",
    "def add(a, b):\n",
    "    return a + b\n",
    "```\n\n",
    "1. first\n",
    "2. second\n",
    "\nDone *now*.",
]


# Every way a string could become markup or code in the page.
HTML_OR_CODE_SINKS = "|".join(
    [
        r"\.(inner|outer)HTML\s*=",
        r"insertAdjacentHTML\(",
        r"document\.write",
        r"eval\(",
        r"Function\(",
    ]
)


async def test_page_and_assets_are_served_locally_under_a_strict_policy(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    async with http.get(server.url + "/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        policy = response.headers["Content-Security-Policy"]
        html = await response.text()
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe" not in policy
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {"/web/app.js", "/web/style.css"} <= set(assets)
    shipped = sorted(f"/web/{path.name}" for path in WEB_DIR.iterdir())
    assert set(assets) <= set(shipped)
    for path in shipped:
        assert path.startswith("/web/"), path
        async with http.get(server.url + path) as response:
            assert response.status == 200, path
            assert response.headers["Cache-Control"] == "no-cache"
            body = await response.text()
        if path.endswith(".js"):
            assert response.headers["Content-Type"].startswith("text/javascript")
            imports = re.findall(r'from "([^"]+)"', body)
            assert all(name.startswith("./") for name in imports), imports
            assert not re.search(HTML_OR_CODE_SINKS, body), path


async def test_answer_grows_token_by_token_and_renders_markdown(
    page: Page, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=MARKDOWN_TOKENS, delay=TICK))
    chat = ChatPage(page, server.url)
    await chat.open()
    await chat.send("make a plan")

    async def screenshot_mid_answer() -> None:
        await chat.wait_for_text(40)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "chat-mid-answer.png")

    samples, _ = await asyncio.gather(chat.sample_growth(), screenshot_mid_answer())

    lengths = [n for _, n in samples]
    final = lengths[-1]
    intermediate = {n for n in lengths if 0 < n < final}
    assert len(intermediate) >= 3, samples
    first_seen = next(t for t, n in samples if n > 0)
    complete_at = next(t for t, n in samples if n == final)
    assert complete_at - first_seen > (len(MARKDOWN_TOKENS) - 3) * TICK * 1000

    assert await chat.answer.get_attribute("data-status") == "complete"
    body = chat.answer.locator(".body")
    assert await body.locator("h2").inner_text() == "Plan"
    assert await body.locator("ul > li").count() == 3
    assert await body.locator("ul > li strong").inner_text() == "the docs"
    assert await body.locator("ul > li code").inner_text() == "code"
    code = body.locator("pre > code.language-python")
    assert await code.inner_text() == "def add(a, b):\n    return a + b"
    assert await body.locator("ol > li").all_inner_texts() == ["first", "second"]
    assert await body.locator("em").inner_text() == "now"
    assert await chat.violations() == []


async def test_stop_ends_the_answer_and_closes_the_upstream(
    page: Page, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=[f"w{i} " for i in range(40)], delay=TICK))
    chat = ChatPage(page, server.url)
    await chat.open()
    await chat.send("talk for a long time")
    await chat.wait_for_text(6)
    await page.click("#stop")
    assert await chat.wait_settled() == "cancelled"
    await asyncio.wait_for(upstream.records[-1].closed.wait(), timeout=1.0)
    assert await chat.answer.locator(".status").inner_text() == "Stopped."
    stopped_at = await chat.answer_text()
    assert 6 <= len(stopped_at) < 40
    await asyncio.sleep(3 * TICK)
    assert await chat.answer_text() == stopped_at, "no text after the stop"
    assert await page.is_hidden("#stop")
    assert await page.is_enabled("#send")


async def test_reload_mid_answer_resumes_after_the_last_index_without_gaps_or_repeats(
    page: Page, start_server: StartServer, upstream: FakeUpstream
) -> None:
    # A reload drops the connection: the generation must outlive it for a while (grace).
    patient = await start_server(detach_grace_seconds="10", ping_seconds="1")
    tokens = [f"t{i:02d} " for i in range(25)]
    upstream.reset(Script(tokens=tokens, delay=TICK))
    chat = ChatPage(page, patient.url)
    await chat.open()
    await chat.send("count for me")
    await chat.wait_for_text(len("t00 t01 t02 t03 t04"))
    resumed: list[str] = []
    page.on("request", lambda request: resumed.append(request.url))
    await page.reload()
    assert await chat.wait_settled() == "complete"
    assert await chat.answer_text() == "".join(tokens).strip()
    assert await page.locator(".msg.user .body").all_inner_texts() == ["count for me"]
    assert len(upstream.records) == 1, "the generation went on; it was not started again"
    after = [url.rsplit("?after=", 1)[1] for url in resumed if "/api/chat/streams/" in url]
    assert len(after) == 1, resumed
    assert int(after[0]) >= 5, "resumed after the last index shown, not from the start"
    assert await page.evaluate("localStorage.getItem('streamchat.active')") is None


async def test_reload_after_the_stream_expired_says_so_and_keeps_the_saved_text(
    page: Page, server: ServerProcess
) -> None:
    chat = ChatPage(page, server.url)
    await chat.open()
    saved = {
        "uid": 1,
        "streamId": "0123456789abcdef",
        "conversationId": "c-gone",
        "messageId": "m-gone",
        "question": "what was it?",
        "index": 3,
        "text": "half an answer",
    }
    await page.evaluate(
        "(saved) => localStorage.setItem('streamchat.active', JSON.stringify(saved))", saved
    )
    await page.reload()
    assert "不存在或已过期" in await chat.error()
    assert await chat.wait_settled() == "error"
    assert await chat.answer_text() == "half an answer"
    assert "0123456789abcdef" in await chat.answer.locator(".status").inner_text()


async def test_validation_errors_show_the_servers_message(
    page: Page, server: ServerProcess, upstream: FakeUpstream
) -> None:
    chat = ChatPage(page, server.url)
    await chat.open()
    await page.click("#send")  # an empty message
    banner = await chat.error()
    assert "消息内容不能为空" in banner
    assert "HTTP 400 · code 51" in banner
    assert await page.locator("#messages .msg").count() == 0

    await page.fill("#uid", "abc")
    await page.dispatch_event("#uid", "change")
    await chat.send("hello")
    await page.wait_for_function(
        "() => document.getElementById('error-text').textContent.includes('用户ID必须是正整数')"
    )
    assert await page.input_value("#message") == "hello", "the message is kept to send again"
    assert upstream.records == []


async def test_upstream_down_shows_a_clear_error(
    page: Page, start_server: StartServer, upstream: FakeUpstream
) -> None:
    # Nothing listens on the discard port (the same server as test_chat_stream's, reused).
    orphan = await start_server(openai_base_url="http://127.0.0.1:9/v1")
    chat = ChatPage(page, orphan.url)
    await chat.open()
    await chat.send("anyone there?")
    banner = await chat.error()
    assert "上游模型服务不可用" in banner
    assert re.search(r"HTTP 50[234] · code 6\d", banner), banner
    assert await page.locator("#messages .msg").count() == 0
    assert await page.input_value("#message") == "anyone there?"


async def test_stream_error_event_is_shown_and_the_partial_answer_kept(
    page: Page, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=["Par", "tial", " answer", "never"], error_after=3, delay=TICK))
    chat = ChatPage(page, server.url)
    await chat.open()
    await chat.send("fail half way")
    assert await chat.wait_settled() == "error"
    assert await chat.answer_text() == "Partial answer"
    # The page shows the server's generic message; the upstream's own text is in its log.
    assert "上游模型服务出错" in await chat.answer.locator(".status").inner_text()
    assert "上游模型服务出错" in await chat.error()
    assert "upstream exploded" in server.log()
    assert await page.is_enabled("#send")


async def test_an_answer_cut_at_the_length_limit_says_so(
    page: Page, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=["To be", " continued"], finish_reason="length"))
    chat = ChatPage(page, server.url)
    await chat.open()
    await chat.send("write a novel")
    assert await chat.wait_settled() == "length"
    assert await chat.answer_text() == "To be continued"
    note = await chat.answer.locator(".status").inner_text()
    assert note == "Cut off: the answer reached its length limit."


async def test_enter_sends_and_shift_enter_starts_a_new_line(
    page: Page, server: ServerProcess, upstream: FakeUpstream
) -> None:
    chat = ChatPage(page, server.url)
    await chat.open()
    await page.type("#message", "first line")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("second line")
    assert await page.input_value("#message") == "first line\nsecond line"
    await page.keyboard.press("Enter")
    assert await chat.wait_settled() == "complete"
    assert upstream.records[-1].body["messages"][-1]["content"] == "first line\nsecond line"
    assert await page.locator(".msg.user .body").inner_text() == "first line\nsecond line"
    assert await page.input_value("#message") == ""


HOSTILE_TOKENS = [
    "Look: <img src=x onerror=\"window.__pwned='img'\">",
    " and <script>window.__pwned='script'</script>",
    "\n\n[click me](javascript:window.__pwned='link')",
    "\n\n<iframe src=\"javascript:window.__pwned='iframe'\"></iframe>",
    "\n\n<a href=\"javascript:window.__pwned='a'\">a</a>",
    "\n\n![tracker](http://tracker.invalid/pixel.png)",
    "\n\n<svg onload=\"window.__pwned='svg'\"></svg>",
]


async def test_model_output_with_html_or_script_executes_nothing(
    page: Page, server: ServerProcess, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=HOSTILE_TOKENS, delay=0.05))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    chat = ChatPage(page, server.url)
    await chat.open()
    await chat.send("be evil")
    assert await chat.wait_settled() == "complete"
    await asyncio.sleep(0.3)  # give an onerror or onload the time it would need

    assert await page.evaluate("window.__pwned") is None
    messages = page.locator("#messages")
    assert await messages.locator("img, script, iframe, svg, object, embed").count() == 0
    links = await messages.locator("a").evaluate_all("(links) => links.map((a) => a.href)")
    assert links == ["http://tracker.invalid/pixel.png"], "only the image, shown as a link"
    text = await chat.answer_text()
    assert "<img src=x onerror=" in text
    assert "<script>window.__pwned='script'</script>" in text
    assert "[click me](javascript:window.__pwned='link')" in text
    assert not [url for url in requested if "tracker.invalid" in url]
    assert await chat.violations() == [], "nothing even tried to run"


async def test_markdown_renderer_builds_only_safe_elements(
    page: Page, server: ServerProcess
) -> None:
    cases = {
        "# Title": "<h1>Title</h1>",
        "a\nb": "<p>a<br>b</p>",
        "- a\n  - b\n- c": "<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>",
        "3. x\n4. y": '<ol start="3"><li>x</li><li>y</li></ol>',
        "```js\nlet x = 1 < 2;\n```": (
            '<pre><code class="language-js" data-lang="js">let x = 1 &lt; 2;</code></pre>'
        ),
        "```\nstill streaming": "<pre><code>still streaming</code></pre>",
        "    indented": "<pre><code>indented</code></pre>",
        "> quoted": "<blockquote><p>quoted</p></blockquote>",
        "| a | b |\n|---|--:|\n| 1 | 2 |": (
            '<div class="table-wrap"><table><thead><tr><th>a</th>'
            '<th style="text-align: right;">b</th></tr></thead><tbody><tr><td>1</td>'
            '<td style="text-align: right;">2</td></tr></tbody></table></div>'
        ),
        "x `a<b>` y": "<p>x <code>a&lt;b&gt;</code> y</p>",
        "**b** *i* ~~d~~": "<p><strong>b</strong> <em>i</em> <del>d</del></p>",
        "[t](https://e.example/x)": (
            '<p><a href="https://e.example/x" target="_blank" '
            'rel="noopener noreferrer nofollow">t</a></p>'
        ),
        "[t](javascript:alert(1))": "<p>[t](javascript:alert(1))</p>",
        "[t](data:text/html,hi)": "<p>[t](data:text/html,hi)</p>",
        "snake_case_name and 2 * 3 * 4": "<p>snake_case_name and 2 * 3 * 4</p>",
        "see https://e.example/a.": (
            '<p>see <a href="https://e.example/a" target="_blank" '
            'rel="noopener noreferrer nofollow">https://e.example/a</a>.</p>'
        ),
        "---": "<hr>",
        "<b onclick=x>bold?</b>": "<p>&lt;b onclick=x&gt;bold?&lt;/b&gt;</p>",
    }
    await ChatPage(page, server.url).open()
    got = await page.evaluate(
        """async (cases) => {
            const { renderMarkdown } = await import("/web/markdown.js");
            const out = {};
            for (const source of cases) {
                const box = document.createElement("div");
                box.append(renderMarkdown(source));
                out[source] = box.innerHTML;
            }
            return out;
        }""",
        list(cases),
    )
    assert got == cases


@pytest.mark.parametrize("tokens", [["舞低", "杨柳", "楼心", "月,", "歌尽", "桃花", "扇底", "风"]])
async def test_the_seeds_own_client_reads_every_event_as_it_arrives(
    page: Page, server: ServerProcess, upstream: FakeUpstream, tokens: list[str]
) -> None:
    upstream.reset(Script(tokens=tokens, delay=TICK))
    await ChatPage(page, server.url).open()
    assert_progressive(await run_seed_client(page, tokens), len(tokens))


async def test_usable_at_phone_width(
    browser: Browser, server: ServerProcess, upstream: FakeUpstream
) -> None:
    context = await browser.new_context(
        locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        page = await context.new_page()
        chat = ChatPage(page, server.url)
        await chat.open()
        width = 390

        async def right_edge(selector: str) -> float:
            box = await page.locator(selector).bounding_box()
            assert box is not None, selector
            return box["x"] + box["width"]

        assert await right_edge("#sidebar") <= 0, "the sidebar is a drawer, closed"
        assert await right_edge("#send") <= width
        await page.click("#toggle-sidebar")
        await page.wait_for_function(
            "() => document.getElementById('sidebar').getBoundingClientRect().left >= 0"
        )
        await page.click("#new-chat")  # picking something closes the drawer
        await page.wait_for_function(
            "() => document.getElementById('sidebar').getBoundingClientRect().right <= 0"
        )

        long_line = "x = " + " + ".join(f"value_{i}" for i in range(40))
        tokens = ["Here:\n\n", "```python\n", long_line, "\n```\n\n", "- one\n", "- two\n"]
        upstream.reset(Script(tokens=[*tokens, *[f"w{i} " for i in range(10)]], delay=TICK))
        await chat.send("show me a long line of code")
        await chat.wait_for_text(len(long_line))
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "chat-phone.png")
        assert await chat.wait_settled() == "complete"
        overflow = await page.evaluate("() => document.documentElement.scrollWidth")
        assert overflow <= width, "the page never scrolls sideways; the code block does"
        assert await right_edge("#messages .msg.assistant pre") <= width
    finally:
        await context.close()
