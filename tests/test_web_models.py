"""The chat page's model picker (DESIGN §10), in Chromium against a real server with a models
file: the list comes from /v1/models, the choice is sent as `model` and kept for the tab, the
answer names the model that wrote it; with keys on, a key sees only its own models."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page

from .fakeupstream import FakeUpstream, Script
from .models import models_file, models_server, write_models
from .servers import ServerProcess
from .test_cli import run_streamchat
from .webpage import ChatPage


@pytest_asyncio.fixture(scope="module")
async def fakes() -> AsyncIterator[dict[str, FakeUpstream]]:
    upstreams = {name: FakeUpstream() for name in ("a", "b", "c")}
    for upstream in upstreams.values():
        await upstream.start()
    yield upstreams
    for upstream in upstreams.values():
        await upstream.close()


@pytest_asyncio.fixture(scope="module")
async def models_path(
    fakes: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return write_models(tmp_path_factory.mktemp("web-models"), models_file(**fakes))


@pytest_asyncio.fixture(scope="module")
async def open_server(models_path: Path, scratch: str) -> AsyncIterator[ServerProcess]:
    server = models_server(scratch, models_path)
    await server.start()
    yield server
    server.stop()


async def picker(page: Page) -> list[str]:
    """The models the picker offers, once it shows."""
    await page.wait_for_selector("#model-box", state="visible")
    options: list[str] = await page.locator("#model option").all_inner_texts()
    return options


async def test_a_person_chooses_a_model_and_the_answer_shows_it(
    page: Page, open_server: ServerProcess, fakes: dict[str, FakeUpstream]
) -> None:
    chat = ChatPage(page, open_server.url)
    await chat.open()
    assert await picker(page) == ["fake-a", "fake-b", "fake-c", "echo", "dead"]
    assert await page.input_value("#model") == "fake-a"
    await page.select_option("#model", "echo")
    await chat.send("hello from the page")
    assert await chat.wait_settled() == "complete"
    assert await chat.answer_text() == "hello from the page"
    assert await chat.answer.get_attribute("data-model") == "echo"
    assert await chat.answer.locator(".model").inner_text() == "echo"
    assert not any(upstream.records for upstream in fakes.values())
    # The choice stays for the tab, through a reload.
    await page.reload()
    await picker(page)
    assert await page.input_value("#model") == "echo"
    # A model that refuses: the answer names the fallback that wrote it.
    fakes["c"].reset(Script(tokens=["from ", "c"]))
    fakes["b"].reset(Script(status=503))
    await page.select_option("#model", "fake-b")
    await chat.send("second")
    assert await chat.wait_settled(2) == "complete"
    assert await chat.answer_text() == "from c"
    assert await chat.answer.get_attribute("data-model") == "fake-c"


async def test_with_keys_the_picker_shows_the_keys_models_only(
    page: Page, models_path: Path, scratch: str, fakes: dict[str, FakeUpstream]
) -> None:
    server = models_server(scratch, models_path, auth="keys")
    env = {**os.environ, **server.env}
    code, key, err = await run_streamchat(
        "keys", "create", "--uid", "5", "--models", "echo,fake-b", env=env
    )
    assert code == 0, err
    await server.start()
    try:
        chat = ChatPage(page, server.url)
        await chat.open()
        await page.wait_for_selector("#key-form", state="visible")
        assert await page.is_hidden("#model-box"), "no list before a key"
        await page.fill("#key", key.strip())
        await page.click("#use-key")
        assert await picker(page) == ["echo", "fake-b"]
        await chat.send("keyed hello")
        assert await chat.wait_settled() == "complete"
        assert await chat.answer.get_attribute("data-model") == "echo"
        assert await chat.answer_text() == "keyed hello"
    finally:
        server.stop()
