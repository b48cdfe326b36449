"""Real streamchat servers for the tests: `streamchat serve` in a subprocess on a free port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One `streamchat serve` process; its log is kept in a file for assertions."""

    def __init__(
        self, env: dict[str, str], startup_seconds: float = 30, args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.startup_seconds = startup_seconds
        self.args = args  # after `streamchat serve`
        self.log_path = Path(tempfile.mkstemp(prefix="streamchat-", suffix=".log")[1])
        base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
        self.env = {**base, "STREAMCHAT_PORT": str(self.port), **env}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    async def logged(self, *texts: str, seconds: float = 5.0) -> str:
        """The first log line holding every one of `texts`, waiting for it up to `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            for line in self.log().splitlines():
                if all(text in line for text in texts):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {texts!r} in:\n{self.log()[-4000:]}")
            await asyncio.sleep(0.05)

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "streamchat", "serve", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tempfile.gettempdir(),
            )

    async def start(self) -> None:
        self.proc = self.spawn()
        deadline = time.monotonic() + self.startup_seconds
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited:\n{self.log()}")
                try:
                    async with session.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
