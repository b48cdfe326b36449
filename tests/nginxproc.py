"""A real nginx in front of a test server, running `deploy/nginx.conf` as shipped.

The deploy file is included unchanged but for two lines: its `listen` port and its upstream
address. Around it goes a main config of our own (pid, logs and temp paths in a temporary
directory, no daemon) that turns gzip on for every text type, event streams included, as a
careless global config would: the stream locations must turn it off themselves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .servers import ServerProcess

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


class NginxProcess(ServerProcess):
    """nginx in the foreground with its own prefix, pid, logs and temp paths.

    Started, awaited and stopped as a server process is; SIGTERM is nginx's fast shutdown,
    which drops every open connection.
    """

    def __init__(self, app_port: int) -> None:
        super().__init__({})  # a free port to listen on, and a file for nginx's own output
        self.dir = Path(tempfile.mkdtemp(prefix="streamchat-nginx-"))
        self.dir.chmod(0o755)  # nginx's workers run as `nobody` when we are root
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(MAIN_CONF.format(dir=self.dir, user=user))
        (self.dir / "streamchat.conf").write_text(site_config(app_port, self.port))

    def log(self) -> str:
        """What nginx printed, then its error log."""
        error_log = self.dir / "error.log"
        errors = error_log.read_text("utf-8", "replace") if error_log.exists() else ""
        return super().log() + errors

    def spawn(self) -> subprocess.Popen[bytes]:
        """The nginx master process, in the foreground."""
        command = [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]
        command += ["-e", str(self.dir / "error.log"), "-g", "daemon off;"]
        with self.log_path.open("wb") as output:
            return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)

    def remove(self) -> None:
        """Delete its directory and output file."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
