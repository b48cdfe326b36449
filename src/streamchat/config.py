"""Settings: one typed object built from the environment (prefix STREAMCHAT_) and `.env`."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from platformdirs import user_cache_path
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The built-in model `make run` installs; `model_files.py` knows how to assemble it.
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b-instruct"


class Settings(BaseSettings):
    """Everything that can be configured, with its default. Built once and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMCHAT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"

    auth: Literal["keys", "off"] | None = Field(
        None,
        description="keys: every /api and /v1 request needs a key; off: uid from the request. "
        "Unset: off when listening on loopback only, keys otherwise.",
    )
    allowed_hosts: str = Field(
        "",
        description="With auth off: the Host names served, comma-separated; empty: the "
        "loopback names on loopback, any host elsewhere.",
    )
    cors_origins: str = Field(
        "",
        description="Origins (scheme://host:port, comma-separated) allowed to call the API; "
        "`*` (any) only with auth keys.",
    )
    trusted_proxies: str = Field(
        "",
        description="Addresses (comma-separated; `*`: any) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed: the client address of the logs and the "
        "per-address connection cap. Empty: nobody's, the socket's peer is the client.",
    )
    key_cache_seconds: float = Field(
        5.0, gt=0, description="How long a key lookup is remembered: a revoked key works this long."
    )

    limit_requests_per_minute: int = Field(
        0, ge=0, description="Chat requests per key (per uid with auth off) a minute; 0: no limit."
    )
    limit_tokens_per_minute: int = Field(
        0, ge=0, description="Tokens (prompt and answer) per key a minute; 0: no limit."
    )
    limit_streams: int = Field(
        8,
        ge=0,
        description="Open streams per key (per uid with auth off) at once; 0: no limit. On by "
        "default: one key alone cannot take every stream slot of the server.",
    )
    limit_followers: int = Field(
        16,
        ge=0,
        description="Resumes (GET /api/chat/streams/{id}) per key following at once; 0: no limit.",
    )
    limits_unreachable: Literal["open", "closed"] = Field(
        "open",
        description="When the limits' counters (Redis) cannot be reached: open lets chats "
        "through uncounted, closed refuses them (503). A busy pool always refuses.",
    )

    provider: Literal["local", "openai", "echo"] = "local"
    model: str = Field(
        "",
        description="Model name; empty picks the provider's default. With the local provider "
        "and no local_model_path, it names a built-in model.",
    )
    model_dir: Path = Field(
        default_factory=lambda: user_cache_path("streamchat") / "models",
        description="Where built-in models are assembled from their packages (about 1.1 GB).",
    )
    local_model_path: Path | None = Field(
        None, description="A GGUF file to load instead of a built-in model."
    )
    local_max_queue: int = Field(
        8, ge=0, description="Requests that may wait while every slot is busy; more get 503."
    )
    local_slots: int = Field(
        4,
        ge=1,
        le=64,
        description="Answers the local model generates at once. Each slot has a KV cache of "
        "local_context_tokens (about 28 KB a token for the 1.5B model: 112 MB per slot at 4096).",
    )
    local_prompt_chunk: int = Field(
        32,
        ge=1,
        le=512,
        description="Prompt tokens decoded per step while other answers are generating: a "
        "long prompt delays their next token by one chunk's time, not by the whole prompt.",
    )
    local_max_tokens: int = Field(1024, ge=1, description="Longest answer, in tokens.")
    local_temperature: float = Field(0.7, ge=0, description="0 picks the likeliest token.")
    local_top_p: float = Field(0.8, gt=0, le=1)
    local_system_prompt: str = Field(
        "", description="System message for every conversation; empty: the model's own default."
    )
    local_context_tokens: int = Field(
        4096, ge=256, description="Context window: prompt and answer together."
    )
    local_threads: int = Field(0, ge=0, description="CPU threads for generation; 0: all cores.")
    models_file: Path | None = Field(
        None,
        description="A YAML file of several models behind one endpoint (docs/models.md); "
        "unset: the provider settings here make the one model.",
    )
    model_cooldown_failures: int = Field(
        3, ge=1, description="Refusals in a row after which a model of the file is skipped…"
    )
    model_cooldown_seconds: float = Field(
        30.0, gt=0, description="…for this long; then one request probes it."
    )
    local_memory_mb: int = Field(
        0,
        ge=0,
        description="Memory the local models of the models file may take together (weights "
        "and KV caches); 0: what the kernel says is available. More stops the server.",
    )
    openai_base_url: str = "http://127.0.0.1:9000/v1"
    openai_api_key: str = ""
    upstream_connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect.")
    upstream_read_timeout: float = Field(
        300.0, gt=0, description="Seconds of upstream silence (headers or body) before giving up."
    )
    upstream_max_connections: int = Field(0, ge=0, description="0 means unlimited.")
    echo_delay_ms: int = Field(50, ge=0)

    max_message_chars: int = Field(32_000, ge=1)
    # Bounds on what one request may ask of the server (DESIGN §8); see docs/architecture.md.
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1,
        description="Largest request body; larger get 413, refused from Content-Length before "
        "it is read. Fits max_conversation_chars of text even written as \\u escapes.",
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="Largest request head (line and headers); larger: 431."
    )
    head_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection must send a whole request head within this time of its "
        "first byte (or of connecting); a silent or slow one is closed.",
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="A request body that stops arriving this long: closed."
    )
    keepalive_timeout_seconds: float = Field(
        5.0, gt=0, description="An idle keep-alive connection is closed after this long."
    )
    max_connections_per_address: int = Field(
        256,
        ge=0,
        description="Open connections from one client address; more are closed at once. "
        "Not applied to STREAMCHAT_TRUSTED_PROXIES (a proxy carries many clients). 0: none.",
    )
    max_messages: int = Field(256, ge=1, description="Most messages in one /v1 request.")
    max_conversation_chars: int = Field(
        128_000, ge=1, description="All messages of one /v1 request together, in characters."
    )
    max_tokens_cap: int = Field(
        32_768, ge=1, description="The largest max_tokens a /v1 request may ask for; more: 400."
    )
    ping_seconds: float = Field(15.0, gt=0)
    send_timeout_seconds: float = Field(
        30.0, gt=0, description="A client that takes longer to accept one write is dropped."
    )
    detach_grace_seconds: float = Field(30.0, ge=0)
    max_streams: int = Field(
        10_000,
        ge=0,
        description="Streams generating at once per process; more get 503. 0: no bound.",
    )
    stream_ttl_seconds: float = Field(
        600.0, gt=0, description="How long a finished stream stays replayable."
    )
    stream_retain_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Memory budget for finished, replayable streams."
    )
    stream_retain_bytes_per_owner: int = Field(
        8 * 1024 * 1024,
        ge=0,
        description="Each owner's share of that budget: one uid's answers push out only its "
        "own older streams once they hold this much.",
    )

    direct_routes: bool = Field(
        True,
        description="Serve the routes that start streams without FastAPI's per-request stack "
        "(server/direct.py); off: through FastAPI like every other route.",
    )

    database_url: str = Field(
        "sqlite+aiosqlite:///./streamchat.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///… or postgresql+asyncpg://…",
    )
    database_schema: str = Field(
        "", description="PostgreSQL schema to work in (its search_path); empty: the default."
    )
    database_timeout_seconds: float = Field(
        10.0, gt=0, description="Waits for a lock, a pooled connection, a connect or a query."
    )
    database_migrate: bool = Field(True, description="Run the migrations at start-up.")
    history_max_chars: int = Field(
        32_000, ge=0, description="Budget of earlier turns sent to the model, oldest dropped first."
    )
    history_save_seconds: float = Field(
        1.0, gt=0, description="A growing answer is saved at least this often…"
    )
    history_save_tokens: int = Field(64, ge=1, description="…or after this many tokens, if sooner.")
    redis_url: str = Field(
        "", description="Share streams between nodes through this Redis; unset: in-process hub."
    )
    redis_key_prefix: str = Field(
        "streamchat:", description="Prefix of every Redis key and channel (one per deployment)."
    )
    redis_outage_seconds: float = Field(
        10.0,
        gt=0,
        description="How long streams wait for an unreachable Redis before ending with an error.",
    )
    redis_max_connections: int = Field(
        16,
        ge=2,
        description="Redis connections per process for the hub's commands (plus one pub/sub "
        "and one for the heartbeat), and as many for the limits' counters; commands wait "
        "for a free one.",
    )
    redis_stream_max_events: int = Field(
        100_000, ge=1, description="Events kept per stream in Redis; older ones are trimmed."
    )

    # Operations (DESIGN.md §9).
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics.")
    log_format: Literal["text", "json"] = Field("text", description="json: one object a line.")
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM, how long running streams get to finish."
    )
    node_timeout_seconds: float = Field(
        10.0, gt=0, description="Several nodes: a node silent this long is taken for dead."
    )

    @property
    def loopback_only(self) -> bool:
        """Whether the server listens on a loopback address only."""
        return is_loopback(self.host)

    @property
    def auth_mode(self) -> Literal["keys", "off"]:
        """The auth mode in force: the setting, or its default for the address (§7)."""
        if self.auth is not None:
            return self.auth
        return "off" if self.loopback_only else "keys"

    @property
    def trusted_proxy_list(self) -> list[str]:
        """The addresses whose forwarded headers are believed."""
        return _split(self.trusted_proxies)

    def refusal(self) -> str | None:
        """Why these settings must not be served, or None: checked at start-up."""
        if self.auth_mode == "off" and "*" in self.cors_origin_list:
            return (
                "STREAMCHAT_CORS_ORIGINS=* with auth off would let any web site read and "
                "write every uid's conversations: list the origins allowed, or set "
                "STREAMCHAT_AUTH=keys"
            )
        return None

    @property
    def allowed_host_names(self) -> list[str]:
        """The Host names served with auth off; empty: any."""
        named = _split(self.allowed_hosts)
        if named:
            return named
        return ["localhost", "127.0.0.1", "::1"] if self.loopback_only else []

    @property
    def cors_origin_list(self) -> list[str]:
        """The origins allowed to call the API from a page."""
        return _split(self.cors_origins)

    @property
    def model_name(self) -> str:
        """The model id clients see, defaulting per provider."""
        if self.model:
            return self.model
        if self.provider == "local" and self.local_model_path is not None:
            return self.local_model_path.stem
        defaults = {"local": DEFAULT_LOCAL_MODEL, "echo": "echo", "openai": "gpt-4o-mini"}
        return defaults[self.provider]


def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address or name) is a loopback one."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
