"""The official `openai` npm package, from Node, streams a completion from a real server.

`make test` installs it (`npm ci` in tests/js); the script is tests/js/stream.mjs.
"""

from __future__ import annotations

from typing import Any

from .fakeupstream import FakeUpstream
from .nodejs import run_script
from .servers import ServerProcess


async def run_node(*args: str) -> dict[str, Any]:
    result: dict[str, Any] = await run_script("stream.mjs", *args)
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
