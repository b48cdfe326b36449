"""`streamchat chat` keeps its key out of the process list and answers out of the terminal's
control (issue 23, item 7): the key comes from STREAMCHAT_API_KEY or standard input, never
argv, and control characters of an answer are not written."""

from __future__ import annotations

import asyncio
import os
import sys

from .conftest import StartServer
from .dbs import Databases
from .fakeupstream import FakeUpstream, Script
from .keyring import create_key


async def _chat(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamchat",
        "chat",
        *args,
        env={**base, **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_key_comes_from_the_environment_or_stdin_never_argv(
    start_server: StartServer, databases: Databases, upstream: FakeUpstream
) -> None:
    db = await databases.new("sqlite")
    key = await create_key(db, 81)
    server = await start_server(auth="keys", **db)
    upstream.reset(Script(tokens=["fine"]))
    code, out, err = await _chat("hi", "--url", server.url, env={"STREAMCHAT_API_KEY": key})
    assert (code, out) == (0, "fine\n"), err
    code, out, err = await _chat("hi", "--url", server.url, "--key-stdin", stdin=key.encode())
    assert (code, out) == (0, "fine\n"), err
    code, out, err = await _chat("hi", "--url", server.url, "--key", key)
    assert code == 2
    assert "STREAMCHAT_API_KEY" in err
    assert out == ""


async def test_control_characters_of_an_answer_are_not_written(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    server = await start_server()
    upstream.reset(
        Script(tokens=["red\x1b[31m", " bell\x07", "\x1b]0;title\x07", "\tok\n", "\x9b2J"])
    )
    code, out, err = await _chat("hi", "--uid", "3", "--url", server.url)
    assert code == 0, err
    assert out == "red[31m bell]0;title\tok\n2J\n"
