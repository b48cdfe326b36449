"""Several local models in one models file (DESIGN §10), with the real small model: each GGUF
is loaded as its own model, its memory logged before loading, and models that do not fit
together stop the server with one line naming each model's share."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from streamchat.providers.model_files import BUILTIN, ensure_builtin

from .localmodel import SMALL
from .models import models_server, write_models
from .sseclient import FrameReader, events

# Small and quick: one slot of 512 tokens, one thread, a few tokens an answer.
LOCAL = {
    "local_threads": "1",
    "local_slots": "1",
    "local_context_tokens": "512",
    "local_max_tokens": "4",
    "local_temperature": "0",
}


def two_local_models(model_dir: Path, directory: Path) -> Path:
    """A models file with the small model under two paths (a hard link: two models as far
    as the server knows, one file on disk) and echo."""
    gguf = ensure_builtin(BUILTIN[SMALL], model_dir, print)
    other = directory / "other.gguf"
    os.link(gguf, other)
    content = {
        "default": "small",
        "models": [
            {"name": "small", "provider": "local", "model_path": str(gguf)},
            {"name": "small-copy", "provider": "local", "model_path": str(other)},
            {"name": "echo", "provider": "echo"},
        ],
    }
    return write_models(directory, content)


async def test_two_local_gguf_files_are_two_models_and_their_memory_is_logged(
    model_dir: Path, tmp_path: Path, scratch: str
) -> None:
    server = models_server(scratch, two_local_models(model_dir, tmp_path), **LOCAL)
    server.startup_seconds = 180
    await server.start()
    try:
        for name in ("small", "small-copy"):
            line = await server.logged(f"local model {name}: ", "MB (weights ")
            assert "KV cache 6 MB" in line, line  # 512 positions of the 0.5B model: 6 MB
        async with aiohttp.ClientSession() as http:
            for name in ("small-copy", "small", "echo"):
                body = {"uid": 1, "message": "Say hi.", "model": name}
                async with http.post(server.url + "/api/chat", json=body) as response:
                    assert response.status == 200, await response.text()
                    got = events(await FrameReader(response).all())
                assert got[0]["model"] == name
                assert got[-1]["type"] == "end"
            async with http.get(server.url + "/readyz") as response:
                checks = (await response.json())["data"]["checks"]
        assert checks["models"] == {"small": True, "small-copy": True, "echo": True}
        assert server.log().count("loaded in") == 2, "one load per GGUF file"
    finally:
        server.stop()


@pytest.mark.parametrize("budget", ["100"])
async def test_local_models_that_do_not_fit_stop_the_server_naming_each(
    model_dir: Path, tmp_path: Path, scratch: str, budget: str
) -> None:
    path = two_local_models(model_dir, tmp_path)
    server = models_server(scratch, path, local_memory_mb=budget, **LOCAL)
    code = await asyncio.to_thread(server.spawn().wait, 120)
    assert code == 2
    log = server.log()
    assert f"but STREAMCHAT_LOCAL_MEMORY_MB allows {budget} MB" in log
    assert "(small: " in log
    assert "; small-copy: " in log
    assert "loaded in" not in log, "refused before loading anything"
