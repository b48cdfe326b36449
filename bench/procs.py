"""The benchmark's processes: building the Go tools, and starting the fake upstream, a
streamchat server and the load generator, each pinned to its cores.

Every process started here is stopped here, by the PID recorded when it was started.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

BENCH = Path(__file__).resolve().parent
BIN = BENCH / "bin"


class BenchError(Exception):
    """The benchmark cannot run: a missing tool, a process that did not start."""


def build_tools() -> None:
    """Build the fake upstream and the load generator into bench/bin (Go's cache makes it quick)."""
    go = shutil.which("go")
    if go is None:
        raise BenchError(
            "the benchmark's upstream and load generator are written in Go and `go` is not "
            "installed: run `make bench` (it installs Debian's golang-go), or "
            "`apt-get install golang-go` yourself"
        )
    env = {
        **os.environ,
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",  # standard library only: nothing is ever downloaded
        "GOTOOLCHAIN": "local",
    }
    env.setdefault("GOCACHE", str(BENCH / ".gocache"))
    BIN.mkdir(exist_ok=True)
    done = subprocess.run(
        [go, "build", "-o", str(BIN) + "/", "./cmd/..."],
        cwd=BENCH,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"go build failed:\n{done.stdout}{done.stderr}")


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(command: list[str], cpus: str) -> list[str]:
    """`command` run on the given CPUs with taskset; unchanged if `cpus` is empty."""
    if not cpus:
        return command
    taskset = shutil.which("taskset")
    if taskset is None:
        raise BenchError("taskset (util-linux) is needed to pin processes to cores")
    return [taskset, "-c", cpus, *command]


class _Process:
    """A child process stopped on exit: SIGTERM, then SIGKILL after `grace` seconds."""

    proc: subprocess.Popen[bytes]
    grace = 10.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """Stop the process this object started (and only it: signals go to its PID)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _GoTool(_Process):
    """One of the Go tools of bench/cmd: started with `command`, ready once it prints
    `listening <base URL>`."""

    grace = 2.0
    what = "a Go tool"

    def _start(self, command: list[str], cpus: str) -> str:
        self.proc = subprocess.Popen(pinned(command, cpus), stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().decode()
        if not first.startswith("listening "):
            self.stop()
            raise BenchError(f"{self.what} did not start: {first!r}")
        return first.split()[1]


class Upstream(_GoTool):
    """The fake OpenAI-compatible upstream (bench/cmd/upstream) on a free loopback port."""

    what = "the fake upstream"

    def __init__(self, *, tokens: int, delay_ms: float, cpus: str) -> None:
        command = [str(BIN / "upstream"), "-tokens", str(tokens), "-delay", f"{delay_ms}ms"]
        self.base_url = self._start(command, cpus)


class Gateway(_GoTool):
    """The compiled reference (bench/cmd/gateway): Go's net/http forwarding to `upstream`."""

    what = "the Go gateway"

    def __init__(self, *, upstream: Upstream, cpus: str) -> None:
        target = upstream.base_url + "/v1/chat/completions"
        self.url = self._start([str(BIN / "gateway"), "-upstream", target], cpus)


class Redis(_Process):
    """A private redis-server on a free loopback port, keeping nothing on disk."""

    grace = 2.0

    def __init__(self, *, cpus: str) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise BenchError("the redis scenario needs redis-server (Debian: redis-server)")
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--logfile", ""]
        self.proc = subprocess.Popen(pinned(command, cpus), stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BenchError("redis-server did not start")


class Server(_Process):
    """`streamchat serve` in front of `upstream`, on a free port, in a scratch directory.

    With `redis_url` it is a node of a cluster: the Redis hub, and the database of `share_db`
    (another node's scratch database) when given."""

    def __init__(
        self,
        *,
        upstream: Upstream,
        port: int,
        workers: int,
        cpus: str,
        auth: bool = True,
        redis_url: str = "",
        share_db: Server | None = None,
    ) -> None:
        self.scratch = tempfile.TemporaryDirectory(prefix="streamchat-bench-")
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(self.scratch.name) / "server.log"
        # The user's own STREAMCHAT_ settings (and .env, since the server runs in the scratch
        # directory) are left out, so that every run measures the same configuration.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
        db = share_db.db_path if share_db else Path(self.scratch.name) / "bench.db"
        self.db_path: Path = db
        env.update(
            STREAMCHAT_HOST="127.0.0.1",
            STREAMCHAT_PORT=str(port),
            STREAMCHAT_PROVIDER="openai",
            STREAMCHAT_OPENAI_BASE_URL=upstream.base_url + "/v1",
            STREAMCHAT_MODEL="bench-model",
            STREAMCHAT_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
            STREAMCHAT_AUTH="keys" if auth else "off",
            # BENCH_METRICS=false measures the server with its metrics off (issue 16).
            STREAMCHAT_METRICS=os.environ.get("BENCH_METRICS", "true"),
            # Every load client connects from 127.0.0.1: no per-address cap on them.
            STREAMCHAT_MAX_CONNECTIONS_PER_ADDRESS="0",
            **limit_settings(os.environ.get("BENCH_LIMITS", "on")),
        )
        if redis_url:
            env["STREAMCHAT_REDIS_URL"] = redis_url
        # With keys, every request carries a service key's (it acts for the body's uid).
        self.headers: dict[str, str] = dict(share_db.headers) if share_db else {}
        if auth and not share_db:
            key = _create_key(env)
            self.headers = {"Authorization": f"Bearer {key}"}
        command = [sys.executable, "-m", "streamchat", "serve", "--workers", str(workers)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                pinned(command, cpus),
                env=env,
                cwd=self.scratch.name,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text("utf-8", "replace")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"streamchat exited at start:\n{self.log()}")
            if get_status(self.url + "/healthz") == 200:
                return
            time.sleep(0.05)
        raise BenchError(f"streamchat did not become healthy:\n{self.log()}")

    def stop(self) -> None:
        super().stop()
        self.scratch.cleanup()


def limit_settings(mode: str) -> dict[str, str]:
    """The server's limits for BENCH_LIMITS: `on` counts every request (requests, tokens
    reserved and settled, open streams) with limits far above the load, so that nothing is
    refused and the counting is what is measured; `off` counts nothing (issue 23)."""
    if mode not in ("on", "off"):
        raise SystemExit(f"BENCH_LIMITS must be on or off, not {mode!r}")
    high = "1000000000" if mode == "on" else "0"
    return {
        "STREAMCHAT_LIMIT_REQUESTS_PER_MINUTE": high,
        "STREAMCHAT_LIMIT_TOKENS_PER_MINUTE": high,
        "STREAMCHAT_LIMIT_STREAMS": high,
        "STREAMCHAT_LIMIT_FOLLOWERS": high,
    }


def _create_key(env: dict[str, str]) -> str:
    """A service key in the server's database, made by `streamchat keys create`."""
    command = [sys.executable, "-m", "streamchat", "keys", "create", "--uid", "1", "--service"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"streamchat keys create failed:\n{done.stderr}")
    return done.stdout.strip()


def get_status(url: str) -> int:
    """The status of a GET, or 0 if nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def post_stream(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    """POST and read the whole answer: a warm-up, or a probe for a route. Returns the status."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def run_loadgen(args: list[str], cpus: str) -> dict[str, Any]:
    """Run bench/cmd/loadgen to completion and return its JSON result."""
    command = pinned([str(BIN / "loadgen"), *args], cpus)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"loadgen failed ({done.returncode}):\n{done.stderr}")
    sys.stderr.write(done.stderr)
    result: dict[str, Any] = json.loads(done.stdout)
    return result
