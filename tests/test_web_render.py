"""A long answer renders as it streams without a long frame (measured in Chromium), and the
incremental rendering (web/growing.js) builds what a full render of the same text builds."""

from __future__ import annotations

import re

from playwright.async_api import Page

from .fakeupstream import FakeUpstream, Script
from .servers import ServerProcess
from .webpage import ChatPage

LINES = 16_000
MARKERS = 14  # lines of a section that hold a marker
FRAME_BUDGET_MS = 50  # Chromium reports frames longer than this as long animation frames

# A section of 20 lines, as a long answer is written: heading, paragraph, list, code.
SECTION = """## Part {k} (L{n0})

Line L{n1} of a paragraph about part {k}, with **bold** and `code`
line L{n2} goes on, and links to https://example.com/{k}
line L{n3} ends it.

- item L{n4} with *emphasis*
- item L{n5}
  continued L{n6}
- item L{n7}

```python
def part_{k}():  # L{n8}
    total = 0  # L{n9}
    for i in range({k}):  # L{n10}
        total += i  # L{n11}
    total *= 2  # L{n12}
    return total  # L{n13}
```

"""


def long_answer() -> str:
    """LINES lines of Markdown; every line but the blank ones and the fences has a marker L<n>."""
    numbers = [{f"n{j}": k * MARKERS + j for j in range(MARKERS)} for k in range(LINES // 20)]
    text = "".join(SECTION.format(k=k, **n) for k, n in enumerate(numbers))
    assert text.count("\n") == LINES
    return text


def chunks(text: str, size: int) -> list[str]:
    """The text cut every `size` characters, so that tokens end in the middle of lines."""
    return [text[i : i + size] for i in range(0, len(text), size)]


# While answer number `count` streams (from when its bubble shows until it is complete): the
# duration of every long animation frame (Chromium reports the frames over 50 ms) and the
# number of frames.
WATCH_FRAMES = """
(count) => {
  const entries = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ type: "long-animation-frame" });
  window.__frames = new Promise((resolve) => {
    let started = null;
    let frames = 0;
    const tick = (now) => {
      const answer = document.querySelectorAll("#messages .msg.assistant")[count - 1];
      if (!answer || answer.dataset.status === "streaming") {
        if (answer) started ??= now;
        frames += answer ? 1 : 0;
        requestAnimationFrame(tick);
        return;
      }
      entries.push(...observer.takeRecords());
      observer.disconnect();
      const long = entries.filter((e) => e.startTime + e.duration > started);
      resolve({ long: long.map((e) => e.duration), frames });
    };
    requestAnimationFrame(tick);
  });
}
"""

# The HTML of a container rendered by growing.js, without its parts (their blocks in place).
UNWRAPPED = """
  const unwrapped = (container) => {
    const copy = container.cloneNode(true);
    const parts = copy.querySelectorAll(":scope > .part");
    for (const part of parts) part.replaceWith(...part.childNodes);
    return copy.innerHTML;
  };
"""

SAME_AS_A_FULL_RENDER = (
    "async (body, text) => {"
    + UNWRAPPED
    + """
  const { renderMarkdown } = await import("/web/markdown.js");
  const box = document.createElement("div");
  box.append(renderMarkdown(text));
  return unwrapped(body) === box.innerHTML;
}"""
)


async def test_a_16000_line_answer_streams_in_with_no_frame_over_50_ms(
    page: Page, server: ServerProcess, upstream: FakeUpstream
) -> None:
    chat = ChatPage(page, server.url)
    await chat.open()
    # A first, short answer in the same Markdown: the page's one-off costs come before the
    # measured answer (the first use of a bold, italic or monospace font, the first date the
    # sidebar formats: 30 to 50 ms in all).
    upstream.reset(Script(tokens=chunks(long_answer()[:800], 100)))
    await chat.send("a short answer first")
    assert await chat.wait_settled() == "complete"

    text = long_answer()
    # Two tries: on a quiet machine no frame is over 24 ms, but when other processes take
    # the cores one frame in a few hundred waits for one (50-100 ms of wall time for 10-30
    # ms of work). A page that renders the whole answer again fails both (before: 24 of 45
    # frames over 50 ms, the longest 755 ms), and no try may have a frame over 200 ms.
    for answers in (2, 3):
        upstream.reset(Script(tokens=chunks(text, 600), delay=0.015))
        await page.evaluate(WATCH_FRAMES, answers)
        await chat.send("write a very long answer")
        frames = await page.evaluate("window.__frames")
        assert await chat.wait_settled(answers=answers) == "complete"
        long = sorted(round(ms) for ms in frames["long"])
        assert frames["frames"] > 100, "the answer streamed in over many frames"
        assert all(ms <= 4 * FRAME_BUDGET_MS for ms in long), long
        if not long:
            break
    assert not long, f"{len(long)} of {frames['frames']} frames over {FRAME_BUDGET_MS} ms: {long}"

    body = chat.answer.locator(".body")
    shown = await body.evaluate("(body) => body.textContent")
    markers = re.findall(r"L(\d+)", shown)
    assert len(markers) == LINES // 20 * MARKERS
    assert markers == re.findall(r"L(\d+)", text), "every line shows, once, in order"
    assert await body.evaluate(SAME_AS_A_FULL_RENDER, text), "the same nodes as a full render"


# Texts whose blocks end in every way the renderer knows, some of them only at the next line.
GROWING_CASES = [
    "## Plan\n\nSteps:\n\n- read **the docs**\n- write `code`\n\n```python\ndef add(a, b):\n"
    "    return a + b\n```\n\n1. first\n2. second\n\nDone *now*.",
    "# Title\npara one\nline two\n\n    indented\n\n    code\nafter\n> quoted\n> more\n\n"
    "| a | b |\n|---|--:|\n| 1 | 2 |\n---\n**b** *i* ~~d~~ [t](https://e.example/x)\n",
    "- item\n\n- loose item\n\n  continued\n- last\nnot a list\n\n3. x\n4. y\n\n\n\n- other\n",
    "- a\n  - b\n    - c\n  - d\n- e\n\n  para in e\n\n  ```\n  code in e\n  ```\nend\n",
    "a\r\nb\r\n\r\n- c\r\n- d\r\n\r\n```\r\nx\r\n```\r\ntail",
    "| a |\nnot a separator\n| b |\n|---|\n| 1 |\n\n> q\n\n> r\n- x\n# h\n___\n",
    "para\n```js\nunclosed fence\nstill streaming",
    "".join(f"Paragraph {n}.\n\n" for n in range(150)) + "- and\n- a list",
]

GROWS_LIKE_A_FULL_RENDER = (
    "async ({ cases, sizes }) => {"
    + UNWRAPPED
    + """
  const { GrowingMarkdown } = await import("/web/growing.js");
  const { renderMarkdown } = await import("/web/markdown.js");
  const full = (text) => {
    const box = document.createElement("div");
    box.append(renderMarkdown(text));
    return box.innerHTML;
  };
  const wrong = [];
  for (const text of cases) {
    for (const size of sizes) {
      const container = document.createElement("div");
      const growing = new GrowingMarkdown(container);
      for (let end = size; ; end += size) {
        growing.append(text.slice(end - size, end));
        if (unwrapped(container) !== full(text.slice(0, end))) {
          wrong.push([size, text.slice(0, end)]);
          break;
        }
        if (end >= text.length) break;
      }
    }
  }
  return wrong;
}"""
)


async def test_growing_markdown_shows_what_a_full_render_shows_at_every_step(
    page: Page, server: ServerProcess
) -> None:
    await ChatPage(page, server.url).open()
    sizes = [1, 2, 5, 16, 1000]
    wrong = await page.evaluate(GROWS_LIKE_A_FULL_RENDER, {"cases": GROWING_CASES, "sizes": sizes})
    assert wrong == []
    parts = await page.evaluate(
        """async (text) => {
            const { GrowingMarkdown } = await import("/web/growing.js");
            const container = document.createElement("div");
            new GrowingMarkdown(container).append(text);
            return container.querySelectorAll(":scope > .part").length;
        }""",
        GROWING_CASES[-1],
    )
    assert parts == 3, "the settled blocks are kept in parts of 64"
