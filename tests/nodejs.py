"""Run a script of tests/js (the JavaScript clients our users run) and read what it printed."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson

JS = Path(__file__).parent / "js"


async def run_script(script: str, *args: str) -> Any:
    """`node tests/js/<script> args…`: the JSON it printed on stdout (it must exit 0)."""
    node = shutil.which("node")
    assert node is not None, "node is not installed (.ci/run installs it)"
    assert (JS / "node_modules" / "ai").is_dir(), "run `make install-js` (npm ci in tests/js)"
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    return orjson.loads(stdout)
