"""What the local-model tests share: the test model's settings, and ways to watch the model.

The tests run the real Qwen2.5-Coder-0.5B (the `small-model` extra) on one thread, at
temperature 0: three times faster than the default 1.5B model, deterministic, and steady
on a machine whose other core is busy.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from .servers import ServerProcess

SMALL = "qwen2.5-coder-0.5b-instruct"
CJK = re.compile(r"[\u4e00-\u9fff]")
STORY: dict[str, Any] = {
    "uid": 1,
    "message": "Write a very long story about a robot who learns to paint.",
}
HELLO: dict[str, Any] = {"uid": 1, "message": "Say hello."}


def local_settings(model_dir: Path, **extra: str) -> dict[str, str]:
    """`start_server` settings for the small model, assembled in `model_dir`."""
    return {
        "provider": "local",
        "model": SMALL,
        "model_dir": str(model_dir),
        "local_threads": "1",
        "local_temperature": "0",
        "ping_seconds": "0.25",
        "detach_grace_seconds": "0",
        **extra,
    }


def cpu_seconds(server: ServerProcess) -> float:
    """CPU time the server process has used so far (all its threads)."""
    assert server.proc is not None
    stat = Path(f"/proc/{server.proc.pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_used(server: ServerProcess, seconds: float) -> float:
    """CPU seconds the server uses during the next `seconds`."""
    before = cpu_seconds(server)
    await asyncio.sleep(seconds)
    return cpu_seconds(server) - before


async def generation_line(server: ServerProcess, trace_id: str, within: float = 30) -> str:
    """The provider's log line about the generation of the request with `trace_id`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if trace_id in line and "generation:" in line:
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"no generation line for {trace_id}:\n{server.log()}")


def stopped_after_ms(line: str) -> int:
    """How long the model took to stop after its stream was closed, from its log line."""
    match = re.search(r"stopped (\d+) ms after close", line)
    assert match, line
    return int(match.group(1))


_OPEN: list[AsyncOpenAI] = []


def client_for(server: ServerProcess, timeout: float = 120) -> AsyncOpenAI:
    """The official client on the embedded model; closed after the test by `close_clients`
    (conftest.py), so that its sockets are not left to the GC to fail a later test."""
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=timeout)
    _OPEN.append(client)
    return client


async def close_clients() -> None:
    """Close the clients `client_for` made."""
    while _OPEN:
        await _OPEN.pop().close()
