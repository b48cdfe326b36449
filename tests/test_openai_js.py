"""The official `openai` npm package, from Node, streams a completion from a real server.

`make test` installs it (`npm ci` in tests/js); the script is tests/js/stream.mjs.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson

from .fakeupstream import FakeUpstream
from .servers import ServerProcess

JS = Path(__file__).parent / "js"


async def run_node(*args: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is not installed (.ci/run installs it)"
    assert (JS / "node_modules" / "openai").is_dir(), "run `make test`: it runs npm ci in tests/js"
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS / "stream.mjs"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, stderr.decode()
    result: dict[str, Any] = orjson.loads(stdout)
    return result


async def test_the_official_js_client_streams_a_completion(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    result = await run_node(server.url + "/v1", "gpt-4o-mini")
    seen = result["seen"]
    assert seen["roles"] == ["assistant"]
    assert seen["text"] == "Hello, world!"
    assert seen["finishReasons"] == ["stop"]
    # The fake upstream counts one prompt token per character.
    assert seen["usage"] == {"prompt_tokens": 15, "completion_tokens": 5, "total_tokens": 20}
    assert len(set(seen["ids"])) == 1
    assert set(seen["objects"]) == {"chat.completion.chunk"}
    assert upstream.records[0].body["messages"] == [{"role": "user", "content": "hello from node"}]

    refused = result["refused"]
    assert refused["status"] == 400
    assert refused["param"] == "n"
    assert "n > 1 is not supported" in refused["message"]
    assert len(upstream.records) == 1, "the refused request did not reach the model"
