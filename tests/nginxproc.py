"""A real nginx in front of a test server, running `deploy/nginx.conf` as shipped.

The deploy file is included unchanged but for two lines: its `listen` port and its upstream
address. Around it goes a main config of our own (pid, logs and temp paths in a temporary
directory, no daemon) that turns gzip on for every text type, event streams included, as a
careless global config would: the stream locations must turn it off themselves.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from .servers import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"

MAIN_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
{user}
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    gzip on;
    gzip_min_length 1;
    gzip_types text/event-stream application/json text/css application/javascript text/plain;
    include {dir}/streamchat.conf;
}}
"""


def site_config(app_port: int, listen_port: int) -> str:
    """deploy/nginx.conf pointed at the app on `app_port`, listening on `listen_port`."""
    text = DEPLOY_CONF.read_text("utf-8")
    text, upstreams = re.subn(r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{app_port};", text)
    text, listens = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen_port};", text)
    assert (upstreams, listens) == (1, 1), "deploy/nginx.conf no longer has the expected shape"
    return text


class NginxProcess:
    """nginx in the foreground with its own prefix, pid, logs and temp paths."""

    def __init__(self, app_port: int) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="streamchat-nginx-"))
        self.dir.chmod(0o755)  # nginx's workers run as `nobody` when we are root
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(MAIN_CONF.format(dir=self.dir, user=user))
        (self.dir / "streamchat.conf").write_text(site_config(app_port, self.port))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def spawn(self) -> subprocess.Popen[bytes]:
        """The nginx master process, in the foreground."""
        command = [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]
        command += ["-e", str(self.dir / "error.log"), "-g", "daemon off;"]
        with (self.dir / "stderr.log").open("wb") as stderr:
            return subprocess.Popen(command, stdout=stderr, stderr=subprocess.STDOUT)

    async def start(self) -> None:
        """Start nginx and wait until it proxies to the app."""
        self.proc = self.spawn()
        deadline = time.monotonic() + 15
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    stderr = (self.dir / "stderr.log").read_text("utf-8", "replace")
                    raise RuntimeError(f"nginx exited: {stderr}\n{self.log()}")
                try:
                    async with session.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"nginx did not start:\n{self.log()}")

    def stop(self) -> None:
        """Stop nginx at once (SIGTERM: its fast shutdown drops open connections)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove(self) -> None:
        """Delete its directory."""
        shutil.rmtree(self.dir, ignore_errors=True)
