"""Driving the chat page in Debian's headless Chromium, the way a person uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from playwright.async_api import Locator, Page

# A browser download is not possible here: Playwright drives the system's Chromium.
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
TICK = 0.2  # seconds between the fake model's tokens in these tests, as a slow model streams

# Runs before the page's own scripts: records any Content-Security-Policy violation, so a test
# can tell "nothing tried to run" from "something tried and the policy stopped it".
WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""

# Samples the last answer's text length every 20 ms until it stops streaming.
SAMPLE_GROWTH = """
async () => {
  const started = performance.now();
  const samples = [];
  const last = () => [...document.querySelectorAll("#messages .msg.assistant")].pop();
  while (true) {
    const answer = last();
    const shown = answer ? answer.querySelector(".body").textContent.length : 0;
    samples.push([performance.now() - started, shown]);
    if (answer && answer.dataset.status !== "streaming") return samples;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
"""

ANSWER_SETTLED = """
(count) => {
  const answers = document.querySelectorAll("#messages .msg.assistant");
  return answers.length >= count && answers[answers.length - 1].dataset.status !== "streaming";
}
"""


class ChatPage:
    """The chat page of one server, as a person sees and uses it."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url

    async def open(self) -> None:
        """Load the page and wait for its script to be ready."""
        await self.page.goto(self.base_url + "/")
        await self.page.wait_for_function("() => document.getElementById('uid').value !== ''")

    async def set_uid(self, uid: int | str) -> None:
        """Type a uid into its box, as a person would (the page reacts on change)."""
        await self.page.fill("#uid", str(uid))
        await self.page.dispatch_event("#uid", "change")

    async def conversations(self) -> list[str]:
        """The titles in the sidebar, top to bottom."""
        titles: list[str] = await self.page.locator("#conversations .title").all_inner_texts()
        return titles

    async def bubbles(self) -> list[tuple[str, str]]:
        """(role, text) of every message on screen."""
        found: list[tuple[str, str]] = await self.page.locator("#messages .msg").evaluate_all(
            """(all) => all.map((m) => [m.classList.contains("user") ? "user" : "assistant",
                                         m.querySelector(".body").innerText])"""
        )
        return [(role, text) for role, text in found]

    async def send(self, text: str) -> None:
        """Type a message and press Send."""
        await self.page.fill("#message", text)
        await self.page.click("#send")

    @property
    def answer(self) -> Locator:
        """The latest answer bubble."""
        return self.page.locator("#messages .msg.assistant").last

    async def answer_text(self) -> str:
        """The latest answer's visible text."""
        return await self.answer.locator(".body").inner_text()

    async def wait_for_text(self, minimum: int) -> None:
        """Wait until the latest answer shows at least `minimum` characters."""
        await self.page.wait_for_function(
            """(n) => {
                const a = [...document.querySelectorAll("#messages .msg.assistant")].pop();
                return a && a.querySelector(".body").textContent.length >= n;
            }""",
            arg=minimum,
        )

    async def wait_settled(self, answers: int = 1) -> str:
        """Wait until the latest answer stops streaming; its status."""
        await self.page.wait_for_function(ANSWER_SETTLED, arg=answers)
        status = await self.answer.get_attribute("data-status")
        assert status is not None
        return status

    async def sample_growth(self) -> list[tuple[float, int]]:
        """(milliseconds, text length) of the latest answer until it stops streaming."""
        samples: list[Any] = await self.page.evaluate(SAMPLE_GROWTH)
        return [(float(t), int(n)) for t, n in samples]

    async def error(self) -> str:
        """The error banner's text, once it shows."""
        banner = self.page.locator("#error")
        await banner.wait_for(state="visible")
        return await banner.inner_text()

    async def violations(self) -> list[str]:
        """Content-Security-Policy violations seen by the page."""
        found: list[str] = await self.page.evaluate("window.__violations")
        return found


# The client from the seed's article, as written there, collecting instead of logging.
SEED_CLIENT = """
async (body) => {
  const started = performance.now();
  const got = [];
  const res = await fetch("/api/chat", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const reader = res.body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let lines = buffer.split("\\n\\n");
    buffer = lines.pop();
    for (const chunk of lines) {
      const dataLine = chunk.trim();
      if (dataLine.startsWith("data: ")) {
        got.push([performance.now() - started, dataLine.slice(6)]);
      }
    }
  }
  return got;
}
"""


async def run_seed_client(page: Page, tokens: list[str]) -> list[tuple[float, dict[str, object]]]:
    """Run the seed's client in the page; (milliseconds, event) for every `data:` it read."""
    body = {"message": "舞低杨柳楼心月,歌尽桃花扇底风", "uid": 1}
    raw: list[tuple[float, str]] = await page.evaluate(SEED_CLIENT, body)
    got = [(float(at), orjson.loads(data)) for at, data in raw]
    events = [event for _, event in got]
    assert [e["index"] for e in events] == list(range(len(tokens) + 2))
    assert [e["type"] for e in events] == ["start", *["delta"] * len(tokens), "end"]
    assert "".join(str(e["delta"]) for e in events if e["type"] == "delta") == "".join(tokens)
    return got


def assert_progressive(got: list[tuple[float, dict[str, object]]], tokens: int) -> None:
    """Events arrived one by one as the model wrote them, not all at the end."""
    times = [at for at, event in got if event["type"] == "delta"]
    assert times[-1] - times[0] > (tokens - 2) * TICK * 1000, times
    assert len(set(times)) >= tokens - 1, "each token arrived in its own read"
    assert got[0][0] < times[-1] - (tokens - 2) * TICK * 1000, "start came long before the end"
