"""The package's shape, beyond the import-linter contracts of `make lint`: no import cycles
between modules, no module longer than a reader can hold (STYLE.md: ~300 lines), and no
heavy package in a server that never uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grimp

import streamchat

MAX_LINES = 350


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("streamchat")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append((module, *back))
    assert not cycles, cycles


def test_no_module_is_over_the_length_limit() -> None:
    root = Path(streamchat.__file__).parent
    long = {
        str(path.relative_to(root)): lines
        for path in root.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


# A server of one node, on the OpenAI-compatible provider, with keys, limits, metrics and
# SQLite on: start-up (the lifespan included), as `streamchat serve` runs it in a worker.
_SERVE_AND_LIST_MODULES = """
import asyncio, json, sys
import streamchat.cli  # the `streamchat` command, which `serve` runs from
from streamchat.server.serve import worker_app

app = worker_app().app  # inside ServerSend, the outermost layer

async def start_and_stop() -> None:
    async with app.router.lifespan_context(app):
        pass

asyncio.run(start_and_stop())
print(json.dumps(sorted(sys.modules)))
"""

# What such a server never needs, each worth megabytes resident (docs/performance.md): the
# embedded model (its runtime and our code for it), Alembic once the schema is current (with
# Mako and Pygments), redis-py without STREAMCHAT_REDIS_URL, aiohttp (the `chat`
# command's client; the upstream is read with providers/http1.py), and SQLAlchemy's
# PostgreSQL dialect on SQLite.
_NEVER_SERVING = (
    "aiohttp",
    "llama_cpp",
    "numpy",
    "streamchat.providers.local",
    "streamchat.providers.llamacpp",
    "alembic",
    "mako",
    "pygments",
    "redis",
    "sqlalchemy.dialects.postgresql",
)


def test_a_single_node_on_an_http_upstream_imports_no_model_runtime_alembic_redis_or_aiohttp(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
    env.update(
        STREAMCHAT_PROVIDER="openai",
        STREAMCHAT_OPENAI_BASE_URL="http://127.0.0.1:9/v1",  # never called
        STREAMCHAT_MODEL="gpt-4o-mini",
        STREAMCHAT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/streamchat.db",
        STREAMCHAT_AUTH="keys",
        STREAMCHAT_METRICS="true",
        STREAMCHAT_LIMIT_REQUESTS_PER_MINUTE="60",
    )
    upgrade = [sys.executable, "-m", "streamchat", "db", "upgrade"]
    done = subprocess.run(upgrade, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    serve = [sys.executable, "-c", _SERVE_AND_LIST_MODULES]
    done = subprocess.run(serve, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout.splitlines()[-1])
    loaded = [m for m in modules if any(m == p or m.startswith(p + ".") for p in _NEVER_SERVING)]
    assert not loaded, loaded
