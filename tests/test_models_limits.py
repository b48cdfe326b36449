"""The models file's edges (DESIGN §10): cooldown and probe against a real server, a key
limited to some models, and the start-up refusals of a bad file or a missing key variable."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from streamchat.providers.cooldown import Cooldown

from .fakeupstream import FakeUpstream, Script
from .models import KEYS, models_file, models_server, write_models
from .test_cli import run_streamchat


@pytest_asyncio.fixture
async def fakes() -> AsyncIterator[dict[str, FakeUpstream]]:
    upstreams = {name: FakeUpstream() for name in ("a", "b", "c")}
    for upstream in upstreams.values():
        await upstream.start()
    yield upstreams
    for upstream in upstreams.values():
        await upstream.close()


async def ask(http: aiohttp.ClientSession, url: str, model: str | None, key: str = "") -> str:
    """The model that answered a native chat (asserting it did), or the status if refused."""
    body: dict[str, object] = {"message": "hi"} if key else {"uid": 1, "message": "hi"}
    if model is not None:
        body["model"] = model
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.post(url + "/api/chat", json=body, headers=headers) as response:
        if response.status != 200:
            return str(response.status)
        first = await response.content.readline()
        await response.read()
    match = re.search(rb'"model":"([^"]+)"', first)
    assert match, first
    return match.group(1).decode()


async def test_three_refusals_skip_a_model_then_one_request_probes_it(
    fakes: dict[str, FakeUpstream], tmp_path: Path, scratch: str
) -> None:
    path = write_models(tmp_path, models_file(**fakes))
    server = models_server(scratch, path, model_cooldown_failures="3", model_cooldown_seconds="1.5")
    await server.start()
    try:
        fakes["a"].reset(Script(status=500))
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                assert await ask(http, server.url, "fake-a") == "fake-b"
            assert len(fakes["a"].records) == 3
            # Cooling down: fake-a is not tried at all.
            assert await ask(http, server.url, "fake-a") == "fake-b"
            assert len(fakes["a"].records) == 3
            async with http.get(server.url + "/readyz") as response:
                checks = (await response.json())["data"]["checks"]
            assert checks["models"]["fake-a"] is False
            assert checks["provider"] is True
            await server.logged("model=fake-b tried=1")
            # After the cooldown one request probes it; it answers again, and is used again.
            fakes["a"].reset()
            await asyncio.sleep(1.6)
            assert await ask(http, server.url, "fake-a") == "fake-a"
            assert await ask(http, server.url, "fake-a") == "fake-a"
            assert len(fakes["a"].records) == 2
            # A model without fallbacks, cooling down: refused at once, told when to retry.
            fakes["c"].reset(Script(status=500))
            for _ in range(3):
                assert await ask(http, server.url, "fake-c") == "502"
            body = {"uid": 1, "message": "hi", "model": "fake-c"}
            async with http.post(server.url + "/api/chat", json=body) as response:
                assert response.status == 503
                assert 1 <= int(response.headers["Retry-After"]) <= 2
            assert len(fakes["c"].records) == 3
    finally:
        server.stop()


def test_a_failed_probe_cools_the_model_down_again_and_only_one_request_probes() -> None:
    now = [0.0]
    cooldown = Cooldown(3, 30.0, clock=lambda: now[0])
    for _ in range(3):
        assert cooldown.admits()
        cooldown.refused()
    assert not cooldown.admits()
    assert cooldown.cooling()
    now[0] = 30.0
    assert cooldown.admits()  # the probe
    assert not cooldown.admits()  # the others wait for its verdict
    cooldown.refused()
    assert not cooldown.admits()
    assert cooldown.retry_after() == 30
    now[0] = 60.0
    assert cooldown.admits()
    cooldown.abandoned()  # its client left: the next request probes
    assert cooldown.admits()
    cooldown.accepted()
    assert cooldown.admits()
    assert cooldown.admits()
    assert not cooldown.cooling()


async def test_a_key_limited_to_some_models_sees_and_uses_only_those(
    fakes: dict[str, FakeUpstream], tmp_path: Path, scratch: str
) -> None:
    path = write_models(tmp_path, models_file(**fakes))
    server = models_server(scratch, path, auth="keys", key_cache_seconds="0.2")
    db = {"STREAMCHAT_DATABASE_URL": server.env["STREAMCHAT_DATABASE_URL"]}
    env = {**os.environ, **KEYS, "KEY_C": "x", "STREAMCHAT_MODELS_FILE": str(path), **db}
    code, limited, err = await run_streamchat(
        "keys", "create", "--uid", "7", "--models", "fake-b,echo", env=env
    )
    assert code == 0, err
    code, everything, err = await run_streamchat("keys", "create", "--uid", "8", env=env)
    assert code == 0, err
    code, _, err = await run_streamchat("keys", "create", "--uid", "9", "--models", "gpt", env=env)
    assert code == 2
    assert "no model named gpt" in err
    code, listing, _ = await run_streamchat("keys", "list", env=env)
    assert [row.split()[5] for row in listing.splitlines()[1:]] == ["fake-b,echo", "all"]
    limited, everything = limited.strip(), everything.strip()
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:

            async def get(path: str, key: str) -> tuple[int, str]:
                headers = {"Authorization": f"Bearer {key}"}
                async with http.get(server.url + path, headers=headers) as response:
                    return response.status, await response.text()

            status, body = await get("/v1/models", limited)
            assert status == 200
            assert '"fake-b"' in body
            assert '"echo"' in body
            assert '"fake-a"' not in body
            assert '"fake-c"' not in body
            status, body = await get("/v1/models", everything)
            assert '"fake-a"' in body
            assert '"fake-c"' in body
            assert (await get("/v1/models/fake-b", limited))[0] == 200
            # Not allowed and unknown are the same 404, word for word but for the name.
            forbidden = await get("/v1/models/fake-a", limited)
            unknown = await get("/v1/models/nope-a", limited)
            assert forbidden[0] == unknown[0] == 404
            assert forbidden[1] == unknown[1].replace("nope-a", "fake-a")
            assert await ask(http, server.url, "fake-a", limited) == "404"
            assert await ask(http, server.url, "fake-a", everything) == "fake-a"
            # No model named: the server's default is not this key's, so its first.
            assert await ask(http, server.url, None, limited) == "fake-b"
            completion = {"model": "fake-c", "messages": [{"role": "user", "content": "x"}]}
            headers = {"Authorization": f"Bearer {limited}"}
            async with http.post(
                server.url + "/v1/chat/completions", json=completion, headers=headers
            ) as response:
                assert response.status == 404
                assert (await response.json())["error"]["code"] == "model_not_found"
        assert not fakes["a"].records[1:]
        assert not fakes["c"].records
    finally:
        server.stop()


BAD_FILES = [
    (
        "models:\n  - name: big\n    provider: openai\n",
        "model 'big': base_url: an openai entry needs the upstream's URL",
    ),
    (
        "models:\n  - name: a\n    provider: echo\n    fallbacks: [b]\n",
        "a: fallbacks: no entry is named 'b'",
    ),
    ("models:\n  - name: a\n    provider: vllm\n", "model 'a': field provider: Input should be"),
    ("models:\n  - name: a\n    provider: echo\n    colour: red\n", "field colour: Extra"),
    ("default: x\nmodels:\n  - {name: a, provider: echo}\n", "default: no entry is named 'x'"),
    ("models: [\n", "is not valid YAML"),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
async def test_a_bad_models_file_stops_the_server_with_a_clear_message(
    tmp_path: Path, scratch: str, content: str, message: str
) -> None:
    server = models_server(scratch, write_models(tmp_path, content))
    code = await asyncio.to_thread(server.spawn().wait, 30)
    assert code == 2
    assert f"error: the models file {tmp_path / 'models.yaml'}" in server.log()
    assert message in server.log()


async def test_a_missing_models_file_or_gguf_stops_the_server_naming_it(
    tmp_path: Path, scratch: str
) -> None:
    server = models_server(scratch, tmp_path / "absent.yaml")
    assert await asyncio.to_thread(server.spawn().wait, 30) == 2
    assert f"error: cannot read the models file {tmp_path / 'absent.yaml'}" in server.log()
    gguf = tmp_path / "absent.gguf"
    content = {"models": [{"name": "mine", "provider": "local", "model_path": str(gguf)}]}
    server = models_server(scratch, write_models(tmp_path, content))
    assert await asyncio.to_thread(server.spawn().wait, 30) == 2
    assert f"error: model 'mine': the model file {gguf} does not exist" in server.log()


async def test_a_missing_key_variable_stops_the_server_naming_it(
    fakes: dict[str, FakeUpstream], tmp_path: Path, scratch: str
) -> None:
    server = models_server(scratch, write_models(tmp_path, models_file(**fakes)))
    del server.env["KEY_B"]
    code = await asyncio.to_thread(server.spawn().wait, 30)
    assert code == 2
    assert "error: model 'fake-b': api_key_env names KEY_B, which is not set" in server.log()
    assert "Traceback" not in server.log()
