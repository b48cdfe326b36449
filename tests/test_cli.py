"""`streamchat chat` against a running server."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import aiohttp

from .conftest import StartServer
from .servers import free_port


async def run_streamchat(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`python -m streamchat …` to its end: exit code, standard output, standard error."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamchat",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_cli(*args: str) -> tuple[int, str, str]:
    return await run_streamchat("chat", *args)


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


async def serve_on_taken_port(port: int) -> tuple[int, str]:
    """`streamchat serve` on a port that is taken: its exit code and what it printed."""
    env = {**os.environ, "STREAMCHAT_PROVIDER": "echo"}
    code, out, err = await run_streamchat("serve", "--port", str(port), env=env)
    return code, out + err


async def test_serve_refuses_a_port_another_program_listens_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = await serve_on_taken_port(port)
    assert code == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in out


async def test_serve_refuses_the_port_of_a_running_server(start_server: StartServer) -> None:
    # The server listens with SO_REUSEPORT, which a second server could join unnoticed and
    # take half of the connections: it must be refused like any other taken port.
    echo = await start_server(provider="echo")
    code, out = await serve_on_taken_port(echo.port)
    assert code == 1
    assert "Address already in use" in out
    async with aiohttp.ClientSession() as http, http.get(echo.url + "/hello") as response:
        assert response.status == 200
