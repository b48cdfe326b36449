"""Servers with a models file (DESIGN §10) in front of several fake upstreams, for the tests."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml

from .dbs import sqlite_settings
from .fakeupstream import FakeUpstream
from .servers import ServerProcess

KEYS = {"KEY_A": "sk-upstream-a-secret", "KEY_B": "sk-upstream-b-secret"}
KEYS_C = {"KEY_C": "sk-upstream-c-secret"}


def refused_url() -> str:
    """The base URL of a loopback port nothing listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def models_file(a: FakeUpstream, b: FakeUpstream, c: FakeUpstream) -> dict[str, Any]:
    """fake-a (sent upstream as vendor-a, falls back to fake-b), fake-b (then fake-c),
    fake-c, echo, and `dead` (a refused port, falls back to fake-b)."""
    return {
        "default": "fake-a",
        "models": [
            {
                "name": "fake-a",
                "provider": "openai",
                "base_url": a.base_url,
                "api_key_env": "KEY_A",
                "upstream_model": "vendor-a",
                "fallbacks": ["fake-b"],
            },
            {
                "name": "fake-b",
                "provider": "openai",
                "base_url": b.base_url,
                "api_key_env": "KEY_B",
                "fallbacks": ["fake-c"],
            },
            {
                "name": "fake-c",
                "provider": "openai",
                "base_url": c.base_url,
                "api_key_env": "KEY_C",
            },
            {"name": "echo", "provider": "echo"},
            {
                "name": "dead",
                "provider": "openai",
                "base_url": refused_url(),
                "fallbacks": ["fake-b"],
            },
        ],
    }


def write_models(directory: Path, content: dict[str, Any] | str) -> Path:
    """Write a models file (YAML) into `directory`; its path."""
    path = directory / "models.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def models_server(scratch: str, path: Path, **settings: str) -> ServerProcess:
    """A server (not started) on the models file at `path`, with the upstreams' key variables."""
    streamchat = {
        "STREAMCHAT_MODELS_FILE": str(path),
        "STREAMCHAT_ECHO_DELAY_MS": "0",
        "STREAMCHAT_PING_SECONDS": "1",
        "STREAMCHAT_DETACH_GRACE_SECONDS": "0",
        **{f"STREAMCHAT_{k.upper()}": v for k, v in sqlite_settings(scratch).items()},
        **{f"STREAMCHAT_{k.upper()}": v for k, v in settings.items()},
    }
    return ServerProcess({**KEYS, **KEYS_C, **streamchat})
