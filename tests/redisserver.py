"""Redis for the tests: the machine's shared server, and private ones a test may stop.

The shared server (127.0.0.1:6379) is used by other test runs too: tests only ever touch
keys under their own run's prefix there, and never stop it. A test that needs Redis to go
away starts its own `RedisServer` on a free port in a temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis.asyncio as redis

from .servers import free_port

SHARED_URL = os.environ.get("STREAMCHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def wait_for_redis(url: str, seconds: float = 10.0) -> None:
    """Wait until Redis at `url` answers PING; RuntimeError if it does not in time."""
    deadline = time.monotonic() + seconds
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        while True:
            try:
                if await client.ping():
                    return
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis at {url} is not answering: {exc}") from exc
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key under `prefix` (what one test run wrote)."""
    client = redis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.unlink(*keys)
    finally:
        await client.aclose()


class RedisServer:
    """A redis-server of our own, without persistence, that can be killed and restarted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="streamchat-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def spawn(self) -> subprocess.Popen[bytes]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "no",
            "dir": str(self.dir),
            "logfile": str(self.dir / "redis.log"),
        }
        argv = [binary, *(part for k, v in options.items() for part in (f"--{k}", v))]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def start(self) -> None:
        self.proc = self.spawn()
        await wait_for_redis(self.url)

    def kill(self) -> None:
        """Stop at once, as a crash would: whatever it held is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def restart(self, down_for: float = 0.0) -> None:
        self.kill()
        await asyncio.sleep(down_for)
        await self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
