"""The scenarios of the performance issue, and how one measurement is taken.

A measurement is one (scenario, target) pair with its own fresh fake upstream and, for
streamchat targets, its own fresh server: nothing one run leaves behind (open connections,
a grown heap) can colour the next. The server is pinned to `server_cpus`; the upstream and the
load generator share `client_cpus`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import embedded, embedded_users
from .procs import Gateway, Redis, Server, Upstream, free_port, post_stream, run_loadgen


@dataclass(frozen=True)
class Target:
    """What the load generator talks to: the upstream itself, or a route of streamchat."""

    key: str
    label: str
    path: str
    # The event format loadgen reads: "native", "openai", "openai-tools", "responses", "ui".
    wire: str
    workers: int = 0  # 0: not streamchat (the direct upstream, or the Go gateway)
    nodes: int = 1  # 2: two nodes on a private Redis, every stream followed on the second


DIRECT = Target("direct", "direct upstream", "/v1/chat/completions", "openai")
GO = Target("go", "Go passthrough", "/v1/chat/completions", "openai")
NATIVE = Target("api", "/api/chat", "/api/chat", "native", workers=1)
OPENAI = Target("openai", "/v1/chat/completions", "/v1/chat/completions", "openai", workers=1)
# The same route answering with a tool call: its tokens are pieces of the call's arguments.
TOOLS = Target("tools", "/v1, a tool call", "/v1/chat/completions", "openai-tools", workers=1)
# Issue 27: the round's other wire APIs, each against its sibling. A stored response (the
# default) against /v1; the UI stream, which stores its chat, against /api/chat. Both name
# the uid the service key acts for, as /api/chat's body does; each UI stream is a new chat.
RESPONSES = Target("responses", "/v1/responses", "/v1/responses?uid=1", "responses", workers=1)
UI = Target("ui", "/api/ui/chat", "/api/ui/chat?uid=1", "ui", workers=1)
ONE_WORKER = Target("workers1", "/api/chat, 1 worker", "/api/chat", "native", workers=1)
TWO_WORKERS = Target("workers2", "/api/chat, --workers 2", "/api/chat", "native", workers=2)
LLAMA_DIRECT = Target("direct", "llama-cpp-python in-process", "", "")
EMBEDDED = Target("embedded", "/api/chat, embedded model", "/api/chat", "native", workers=1)
REDIS_HUB = Target(
    "redis", "/api/chat, 2 nodes on Redis", "/api/chat", "native", workers=1, nodes=2
)


@dataclass(frozen=True)
class Scenario:
    """A load: concurrency, the upstream's pace, and the targets measured under it."""

    key: str
    title: str
    concurrency: int
    delay_ms: float
    targets: tuple[Target, ...]
    server_cpus: str | None = None  # None: the configured server CPUs


def _env_auth(raw: str) -> bool:
    if raw not in ("keys", "off"):
        raise SystemExit(f"BENCH_AUTH must be keys or off, not {raw!r}")
    return raw == "keys"


def _env_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, not {raw!r}") from None


def _env_users(raw: str, default: tuple[int, ...]) -> tuple[int, ...]:
    if not raw.strip():
        return default
    try:
        users = tuple(int(n) for n in raw.split(","))
    except ValueError:
        users = ()
    if not users or min(users) < 1:
        raise SystemExit(f"BENCH_EMBEDDED_USERS must be counts like 1,2,4, not {raw!r}")
    return users


@dataclass(frozen=True)
class Config:
    """The run's settings, from BENCH_* environment variables (see docs/performance.md)."""

    duration: float = 20.0
    ramp: float = 2.0
    tokens: int = 200
    delay_ms: float = 20.0
    c_burst: int = 64
    c_many: int = 1000
    c_overload: int = 5000
    c_redis: int = 200
    only: tuple[str, ...] = ()
    server_cpus: str = "0"
    client_cpus: str = "1"
    embedded_runs: int = 3
    embedded_tokens: int = embedded.MAX_TOKENS
    embedded_model: str = ""  # the server's default
    embedded_model_dir: str = ""
    embedded_users: tuple[int, ...] = (1, 2, 4)
    auth: bool = True  # streamchat with API keys on (BENCH_AUTH=keys|off)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Read BENCH_DURATION, BENCH_RAMP, BENCH_TOKENS, BENCH_DELAY_MS, BENCH_C_BURST,
        BENCH_C_MANY, BENCH_C_OVERLOAD, BENCH_C_REDIS, BENCH_SCENARIOS, BENCH_SERVER_CPUS,
        BENCH_CLIENT_CPUS, BENCH_EMBEDDED_RUNS, BENCH_EMBEDDED_TOKENS, BENCH_EMBEDDED_MODEL,
        BENCH_EMBEDDED_MODEL_DIR, BENCH_EMBEDDED_USERS, BENCH_AUTH."""
        d = cls()
        two_cores = (os.cpu_count() or 1) >= 2
        return cls(
            duration=_env_number(env, "BENCH_DURATION", d.duration),
            ramp=_env_number(env, "BENCH_RAMP", d.ramp),
            auth=_env_auth(env.get("BENCH_AUTH", "keys")),
            tokens=int(_env_number(env, "BENCH_TOKENS", d.tokens)),
            delay_ms=_env_number(env, "BENCH_DELAY_MS", d.delay_ms),
            c_burst=int(_env_number(env, "BENCH_C_BURST", d.c_burst)),
            c_many=int(_env_number(env, "BENCH_C_MANY", d.c_many)),
            c_overload=int(_env_number(env, "BENCH_C_OVERLOAD", d.c_overload)),
            c_redis=int(_env_number(env, "BENCH_C_REDIS", d.c_redis)),
            only=tuple(s.strip() for s in env.get("BENCH_SCENARIOS", "").split(",") if s.strip()),
            server_cpus=env.get("BENCH_SERVER_CPUS", d.server_cpus if two_cores else ""),
            client_cpus=env.get("BENCH_CLIENT_CPUS", d.client_cpus if two_cores else ""),
            embedded_runs=int(_env_number(env, "BENCH_EMBEDDED_RUNS", d.embedded_runs)),
            embedded_tokens=int(_env_number(env, "BENCH_EMBEDDED_TOKENS", d.embedded_tokens)),
            embedded_model=env.get("BENCH_EMBEDDED_MODEL", ""),
            embedded_model_dir=env.get("BENCH_EMBEDDED_MODEL_DIR", ""),
            embedded_users=_env_users(env.get("BENCH_EMBEDDED_USERS", ""), d.embedded_users),
        )

    def describe(self) -> dict[str, Any]:
        """The settings, for the JSON result."""
        return {
            "duration_s": self.duration,
            "ramp_s": self.ramp,
            "tokens": self.tokens,
            "delay_ms": self.delay_ms,
            "server_cpus": self.server_cpus,
            "client_cpus": self.client_cpus,
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }


def scenarios(cfg: Config) -> list[Scenario]:
    """The issue's scenarios, in the order they run, filtered by BENCH_SCENARIOS."""
    both_cores = ",".join(c for c in (cfg.server_cpus, cfg.client_cpus) if c)
    pace = f"a token every {cfg.delay_ms:g} ms"
    every = [
        Scenario(
            "burst",
            f"C={cfg.c_burst}, upstream sends {cfg.tokens} tokens at once",
            cfg.c_burst,
            0,
            (DIRECT, GO, NATIVE, OPENAI, TOOLS, RESPONSES, UI),
        ),
        Scenario("single", "C=1, added time to first token", 1, 0, (DIRECT, GO, NATIVE, OPENAI)),
        Scenario(
            "many",
            f"C={cfg.c_many}, {pace}",
            cfg.c_many,
            cfg.delay_ms,
            (DIRECT, GO, NATIVE, OPENAI),
        ),
        Scenario(
            "overload",
            f"C={cfg.c_overload}, {pace}",
            cfg.c_overload,
            cfg.delay_ms,
            (DIRECT, GO, NATIVE, OPENAI),
        ),
        Scenario(
            "redis",
            f"C={cfg.c_redis}, {pace}, the Redis hub: each stream also followed on the other node",
            cfg.c_redis,
            cfg.delay_ms,
            (DIRECT, NATIVE, REDIS_HUB),
        ),
        Scenario(
            "workers",
            f"C={cfg.c_burst} at once, 1 worker vs --workers 2 on all cores",
            cfg.c_burst,
            0,
            (ONE_WORKER, TWO_WORKERS),
            server_cpus=both_cores,
        ),
        Scenario(
            "embedded",
            f"the embedded model, {cfg.embedded_runs} answers each, greedy, "
            f"{cfg.embedded_tokens} tokens at most (bench/embedded.py)",
            1,
            0,
            (LLAMA_DIRECT, EMBEDDED),
        ),
        Scenario(
            "embedded-users",
            f"the embedded model, {'/'.join(map(str, cfg.embedded_users))} users at once on "
            f"both cores, default settings, greedy, {cfg.embedded_tokens} tokens at most "
            "(bench/embedded_users.py)",
            max(cfg.embedded_users),
            0,
            tuple(users_target(n) for n in cfg.embedded_users),
            server_cpus=both_cores,
        ),
    ]
    if not cfg.only:
        return every
    unknown = set(cfg.only) - {s.key for s in every}
    if unknown:
        names = ", ".join(s.key for s in every)
        raise SystemExit(f"BENCH_SCENARIOS: unknown {', '.join(sorted(unknown))} (use {names})")
    return [s for s in every if s.key in cfg.only]


def measure_embedded(cfg: Config) -> dict[str, dict[str, Any] | None]:
    """Both targets of the `embedded` scenario, measured side by side; None if not installed."""
    if not embedded.available():
        return {LLAMA_DIRECT.key: None, EMBEDDED.key: None}
    result = embedded.measure(
        cfg.server_cpus,
        cfg.embedded_runs,
        max_tokens=cfg.embedded_tokens,
        model=cfg.embedded_model,
        model_dir=cfg.embedded_model_dir,
    )
    return {LLAMA_DIRECT.key: result["direct"], EMBEDDED.key: result["http"]}


def users_target(users: int) -> Target:
    """A column of the `embedded-users` scenario: `users` asking at once."""
    return Target(f"users{users}", f"{users} user{'s' if users > 1 else ''}", "/api/chat", "native")


def measure_embedded_users(cfg: Config) -> dict[str, dict[str, Any] | None]:
    """The `embedded-users` rows, one server with as many slots as the most users: a run per
    column, and the follow-up's figures under `follow_up`; None if not installed."""
    keys = [users_target(n).key for n in cfg.embedded_users]
    if not embedded.available():
        return dict.fromkeys(keys)
    result = embedded_users.measure_users(
        users=list(cfg.embedded_users),
        threads=0,
        cpus=",".join(c for c in (cfg.server_cpus, cfg.client_cpus) if c),
        max_tokens=cfg.embedded_tokens,
        model=cfg.embedded_model,
        model_dir=cfg.embedded_model_dir,
    )
    runs: dict[str, dict[str, Any] | None] = dict(zip(keys, result.pop("rows"), strict=True))
    return runs | {"follow_up": result}


def measure(cfg: Config, scenario: Scenario, target: Target) -> dict[str, Any] | None:
    """One run of the load generator; None if the server has no such route (yet)."""
    cpus = cfg.server_cpus if scenario.server_cpus is None else scenario.server_cpus
    with Upstream(tokens=cfg.tokens, delay_ms=scenario.delay_ms, cpus=cfg.client_cpus) as up:
        if target is DIRECT:
            return _load(cfg, scenario, target, up.base_url + target.path, [up.pid], 0)
        if target is GO:
            with Gateway(upstream=up, cpus=cpus) as gateway:
                url = gateway.url + target.path
                return _load(cfg, scenario, target, url, [gateway.pid], up.pid)
        if target.nodes == 2:
            return _measure_nodes(cfg, scenario, target, up, cpus)
        with Server(
            upstream=up, port=free_port(), workers=target.workers, cpus=cpus, auth=cfg.auth
        ) as server:
            url = server.url + target.path
            # A warm-up stream: the first request's one-off costs are not what we measure.
            if post_stream(url, _warm_up_body(target), server.headers) in (404, 405):
                return None
            result = _load(cfg, scenario, target, url, [server.pid], up.pid, server.headers)
            if result["errors"]["total"]:
                result["server_log_tail"] = server.log().splitlines()[-40:]
            return result


def _measure_nodes(
    cfg: Config, scenario: Scenario, target: Target, up: Upstream, cpus: str
) -> dict[str, Any] | None:
    """Two nodes on a private Redis and one database: requests go to the first, and every
    stream is followed, live from its first event, on the second."""
    with (
        Redis(cpus=cfg.client_cpus) as redis,
        Server(
            upstream=up, port=free_port(), workers=1, cpus=cpus, auth=cfg.auth, redis_url=redis.url
        ) as first,
        Server(
            upstream=up,
            port=free_port(),
            workers=1,
            cpus=cpus,
            auth=cfg.auth,
            redis_url=redis.url,
            share_db=first,
        ) as second,
    ):
        url = first.url + target.path
        if post_stream(url, _warm_up_body(target), first.headers) in (404, 405):
            return None
        pids = [first.pid, second.pid]
        result = _load(cfg, scenario, target, url, pids, up.pid, first.headers, follow=second.url)
        if result["errors"]["total"]:
            result["server_log_tail"] = (first.log() + second.log()).splitlines()[-40:]
        return result


def _warm_up_body(target: Target) -> bytes:
    if target.wire == "native":
        return b'{"uid":1,"message":"warm up"}'
    if target.wire == "responses":
        return b'{"model":"bench-model","stream":true,"input":"warm up"}'
    if target.wire == "ui":
        message = b'{"id":"m1","role":"user","parts":[{"type":"text","text":"warm up"}]}'
        return b'{"id":"bench-warm-up","messages":[%b]}' % message
    return b'{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"hi"}]}'


def _load(
    cfg: Config,
    scenario: Scenario,
    target: Target,
    url: str,
    pids: list[int],
    up_pid: int,
    headers: dict[str, str] | None = None,
    follow: str = "",
) -> dict[str, Any]:
    ramp = min(cfg.ramp, cfg.duration / 4)
    args = [
        "-url",
        url,
        "-c",
        str(scenario.concurrency),
        "-duration",
        f"{cfg.duration}s",
        "-ramp",
        f"{ramp}s",
        "-wire",
        target.wire,
        "-expect-tokens",
        str(cfg.tokens),
        "-pid",
        ",".join(map(str, pids)),
        "-up-pid",
        str(up_pid),
        "-label",
        f"{scenario.key}/{target.key}",
    ]
    if headers:
        args += ["-H", "|".join(f"{name}: {value}" for name, value in headers.items())]
    if follow:
        args += ["-follow", follow]
    return run_loadgen(args, cfg.client_cpus)
