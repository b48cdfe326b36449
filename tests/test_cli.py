"""`streamchat chat` against a running server."""

from __future__ import annotations

import asyncio
import sys

from .conftest import StartServer
from .servers import free_port


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamchat",
        "chat",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_chat_prints_the_answer(start_server: StartServer) -> None:
    echo = await start_server(provider="echo", echo_delay_ms="5")
    code, out, err = await run_cli("舞低杨柳楼心月 hello", "--uid", "3", "--url", echo.url)
    assert code == 0, err
    assert out == "舞低杨柳楼心月 hello\n"


async def test_chat_reports_validation_errors(start_server: StartServer) -> None:
    echo = await start_server(provider="echo", echo_delay_ms="5")
    code, _out, err = await run_cli("hi", "--uid", "0", "--url", echo.url)
    assert code == 1
    assert "HTTP 400" in err
    assert "uid must be a positive integer" in err


async def test_chat_reports_an_unreachable_server() -> None:
    code, _, err = await run_cli("hi", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2
    assert "cannot connect" in err
    assert "streamchat serve" in err
