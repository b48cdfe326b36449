"""Starting `streamchat serve` with the local provider: the default model, broken models."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamchat.providers.model_files import BUILTIN

from .localmodel import SMALL, local_settings
from .servers import ServerProcess


def env_of(settings: dict[str, str]) -> dict[str, str]:
    return {f"STREAMCHAT_{k.upper()}": v for k, v in settings.items()}


async def serve_until_exit(env: dict[str, str]) -> tuple[int, str]:
    """Run `streamchat serve` that is expected to give up; its exit code and output."""
    server = ServerProcess(env)
    proc = server.spawn()
    for _ in range(600):
        if proc.poll() is not None:
            return proc.returncode, server.log()
        await asyncio.sleep(0.1)
    server.proc = proc
    server.stop()
    raise AssertionError(f"the server did not give up:\n{server.log()}")


@pytest.fixture
def truncated_model(model_dir: Path, tmp_path: Path) -> Path:
    """The test model's first 20 MB: a valid GGUF header whose tensors are missing."""
    path = tmp_path / "truncated.gguf"
    with (model_dir / BUILTIN[SMALL].filename).open("rb") as source:
        path.write_bytes(source.read(20 * 1024 * 1024))
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing file", "does not exist"),
        ("not a gguf", "is not a GGUF model file"),
        ("truncated gguf", "llama.cpp cannot load"),
        ("unknown built-in model", "there is no built-in model 'qwen-9000'"),
    ],
)
async def test_a_broken_model_stops_the_server_with_one_clear_error(
    case: str, expected: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = {"provider": "local", "model_dir": str(tmp_path / "models")}
    if case == "missing file":
        settings["local_model_path"] = str(tmp_path / "missing.gguf")
    elif case == "not a gguf":
        (tmp_path / "notes.gguf").write_text("my notes")
        settings["local_model_path"] = str(tmp_path / "notes.gguf")
    elif case == "truncated gguf":
        settings["local_model_path"] = str(request.getfixturevalue("truncated_model"))
    else:
        settings["model"] = "qwen-9000"
    code, output = await serve_until_exit(env_of(settings))
    assert code == 2
    assert "Traceback" not in output
    assert output.strip().splitlines() == [output.strip()], output
    assert output.startswith("error: ")
    assert expected in output


@pytest.fixture
def damaged_cache(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """A model cache whose test model is damaged as `request.param` says; removed after."""
    cache = tmp_path / "models"
    cache.mkdir()
    good = model_dir / BUILTIN[SMALL].filename
    shutil.copyfile(good, cache / good.name)
    with (cache / good.name).open("r+b") as file:
        if request.param == "flipped bytes":
            file.seek(200 * 1024 * 1024)
            file.write(b"\x00" * 16)
        else:
            file.truncate(300 * 1024 * 1024)
    yield cache
    shutil.rmtree(cache)


@pytest.mark.parametrize("damaged_cache", ["flipped bytes", "truncated"], indirect=True)
async def test_a_damaged_cached_model_is_detected_by_its_checksum_and_rebuilt(
    damaged_cache: Path,
) -> None:
    server = ServerProcess(env_of(local_settings(damaged_cache)), startup_seconds=120)
    try:
        await server.start()
    finally:
        server.stop()
    log = server.log()
    assert "is damaged (its SHA-256 does not match): assembling it again" in log
    assert "assembled" in log
    spec = BUILTIN[SMALL]
    rebuilt = (damaged_cache / spec.filename).read_bytes()
    assert hashlib.sha256(rebuilt).hexdigest() == spec.sha256


@pytest.mark.timeout(600)
async def test_the_default_model_answers_streamchat_chat(tmp_path: Path) -> None:
    """What a person gets from `make run` and `streamchat chat "…"`: the 1.5B model."""
    env = {"STREAMCHAT_MODEL_DIR": str(tmp_path / "models"), "STREAMCHAT_LOCAL_MAX_TOKENS": "60"}
    server = ServerProcess(env, startup_seconds=300)
    try:
        await server.start()
        chat = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "streamchat", "chat", "--url", server.url),
            "Explain Server-Sent Events in two sentences.",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(chat.communicate(), 120)
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "models", ignore_errors=True)
    assert chat.returncode == 0, err.decode()
    text = out.decode()
    assert sum(c.isascii() and c.isalpha() for c in text) >= 40, text
    log = server.log()
    assert "assembling qwen2.5-coder-1.5b-instruct from 22 packages" in log
    assert "model qwen2.5-coder-1.5b-instruct loaded" in log
