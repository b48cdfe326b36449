"""Driving the chat page in Debian's headless Chromium, the way a person uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
