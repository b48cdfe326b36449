"""Through nginx, as deployed: deploy/nginx-cluster.conf in front of two nodes, round robin."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio

from .fakeupstream import FakeUpstream, Script
from .nodes import assert_contiguous, node_env, read_events, resume, start_nodes, text
from .redisserver import SHARED_URL
from .servers import ServerProcess, free_port

SITE = Path(__file__).parent.parent / "deploy" / "nginx-cluster.conf"

# What the test adds around the deployed file: nginx's top level, in a directory of its own,
# and an access log that says which node served each request.
MAIN = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format nodes '$http_x_test_chat $request_method $upstream_addr $status';
    access_log {dir}/access.log nodes;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


def site_for(nodes: list[ServerProcess], port: int) -> str:
    """deploy/nginx-cluster.conf with our nodes and port instead of the compose ones."""
    site = SITE.read_text()
    servers = "".join(f"    server 127.0.0.1:{node.port};\n" for node in nodes)
    site, replaced = re.subn(r"(?m)^    server streamchat\d+:8000;\n", "", site)
    assert replaced == 2, "deploy/nginx-cluster.conf no longer lists its nodes as expected"
    site = site.replace("upstream streamchat_nodes {\n", "upstream streamchat_nodes {\n" + servers)
    site, replaced = re.subn(r"(?m)^    listen 80;$", f"    listen 127.0.0.1:{port};", site)
    assert replaced == 1
    return site


class Nginx:
    """A real nginx running the deployed config, in the foreground, in a temp directory."""

    def __init__(self, nodes: list[ServerProcess]) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="streamchat-nginx-"))
        self.dir.chmod(0o755)  # workers may run as another user
        (self.dir / "site.conf").write_text(site_for(nodes, self.port))
        (self.dir / "nginx.conf").write_text(MAIN.format(dir=self.dir))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> subprocess.Popen[bytes]:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = str(self.dir / "nginx.conf")
        check = subprocess.run([binary, "-t", "-c", conf], capture_output=True, check=False)
        assert check.returncode == 0, check.stderr.decode()
        return subprocess.Popen([binary, "-c", conf], stderr=subprocess.DEVNULL)

    async def start(self) -> None:
        self.proc = self.spawn()
        deadline = time.monotonic() + 10
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, (self.dir / "error.log").read_text()
                await asyncio.sleep(0.05)

    def access_log(self) -> list[list[str]]:
        return [line.split() for line in (self.dir / "access.log").read_text().splitlines()]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="module")
async def nginx(upstream: FakeUpstream, redis_prefix: str) -> AsyncIterator[Nginx]:
    # Auth off set explicitly (off by default refuses what a proxy forwards), and no cap on
    # one uid's streams: fifty users share uid 7 here.
    env = node_env(
        upstream,
        SHARED_URL,
        f"{redis_prefix}nginx:",
        detach_grace_seconds="10",
        auth="off",
        limit_streams="0",
    )
    nodes = await start_nodes(2, env)
    proxy = Nginx(nodes)
    try:
        await proxy.start()
        yield proxy
    finally:
        proxy.stop()
        for node in nodes:
            node.stop()


TOKENS = [f"t{i} " for i in range(12)]


async def chat_disconnect_resume(
    http: aiohttp.ClientSession, url: str, number: int
) -> list[dict[str, object]]:
    """One user: a chat, a dropped connection after 3 deltas, a resume to the end."""
    tag = {"X-Test-Chat": str(number)}
    response, seen = await read_events(http, url, 4, headers=tag)
    response.close()
    rest = await resume(http, url, str(seen[0]["stream_id"]), seen[-1]["index"], headers=tag)
    return seen + rest


async def test_fifty_chats_that_each_drop_and_resume_once_all_complete(
    nginx: Nginx, upstream: FakeUpstream
) -> None:
    upstream.reset(Script(tokens=TOKENS, delay=0.05))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        results = await asyncio.gather(
            *(chat_disconnect_resume(http, nginx.url, n) for n in range(50))
        )
    for got in results:
        assert_contiguous(got)
        assert text(got) == "".join(TOKENS)
        assert got[-1]["type"] == "end"
    # Round robin did spread them, and some resumes did land on the other node.
    served: dict[str, dict[str, str]] = defaultdict(dict)
    for chat, method, node, status in nginx.access_log():
        if chat != "-":
            assert status == "200"
            served[chat][method] = node
    assert len(served) == 50
    assert len({node for chat in served.values() for node in chat.values()}) == 2
    assert any(chat["POST"] != chat["GET"] for chat in served.values())


async def test_sse_passes_through_event_by_event(nginx: Nginx, upstream: FakeUpstream) -> None:
    upstream.reset(Script(tokens=["a", "b", "c"], delay=0.3))
    async with aiohttp.ClientSession() as http:
        response, seen = await read_events(http, nginx.url, 2)
        first_delta_at = time.monotonic()
        response.close()
    # The first delta came through long before the answer was complete.
    assert seen[1]["delta"] == "a"
    record = upstream.records[-1]
    assert first_delta_at < record.token_times[0] + 0.25
    assert response.headers["Content-Type"].startswith("text/event-stream")


def test_compose_runs_the_nodes_the_nginx_config_names() -> None:
    """deploy/docker-compose.yml cannot run here: at least it matches the tested config."""
    compose = (SITE.parent / "docker-compose.yml").read_text()
    nodes = re.findall(r"(?m)^    server (\w+):8000;", SITE.read_text())
    assert nodes == ["streamchat1", "streamchat2"]
    for node in nodes:
        assert re.search(rf"(?m)^  {node}: \*streamchat$", compose), node
    assert 'STREAMCHAT_PORT: "8000"' in compose
    assert "STREAMCHAT_REDIS_URL: redis://redis:6379/0" in compose
    assert "./nginx-cluster.conf:/etc/nginx/conf.d/default.conf:ro" in compose
