"""Settings: one typed object built from the environment (prefix STREAMCHAT_) and `.env`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything that can be configured, with its default. Built once and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMCHAT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"

    provider: Literal["echo", "openai"] = "echo"
    model: str = Field("", description="Model name; empty picks the provider's default.")
    openai_base_url: str = "http://127.0.0.1:9000/v1"
    openai_api_key: str = ""
    upstream_connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect.")
    upstream_read_timeout: float = Field(
        300.0, gt=0, description="Seconds of upstream silence (headers or body) before giving up."
    )
    upstream_max_connections: int = Field(0, ge=0, description="0 means unlimited.")
    echo_delay_ms: int = Field(50, ge=0)

    max_message_chars: int = Field(32_000, ge=1)
    ping_seconds: float = Field(15.0, gt=0)
    send_timeout_seconds: float = Field(
        30.0, gt=0, description="A client that takes longer to accept one write is dropped."
    )
    detach_grace_seconds: float = Field(30.0, ge=0)
    stream_ttl_seconds: float = Field(
        600.0, gt=0, description="How long a finished stream stays replayable."
    )
    stream_retain_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Memory budget for finished, replayable streams."
    )

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
        16, ge=2, description="Redis connections per process for commands (plus one pub/sub)."
    )
    redis_stream_max_events: int = Field(
        100_000, ge=1, description="Events kept per stream in Redis; older ones are trimmed."
    )

    @property
    def model_name(self) -> str:
        """The model id clients see, defaulting per provider."""
        if self.model:
            return self.model
        return {"echo": "echo", "openai": "gpt-4o-mini"}[self.provider]
