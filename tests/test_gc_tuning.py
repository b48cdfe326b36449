"""The server process's garbage collector settings (streamchat.server.gc_tuning)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

PROBE = """
import gc, orjson
from streamchat.server.serve import worker_app
before = gc.get_freeze_count()
app = worker_app()
print(orjson.dumps({"before": before, "frozen": gc.get_freeze_count(),
                    "threshold": gc.get_threshold()}).decode())
"""


def test_the_server_app_freezes_start_up_objects_and_collects_less_often(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
    env["STREAMCHAT_PROVIDER"] = "echo"
    env["STREAMCHAT_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/streamchat.db"
    shown = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    state = orjson.loads(shown.stdout.splitlines()[-1])
    assert state["before"] == 0
    # The modules, classes and routes built at start-up: far more than any stream holds.
    assert state["frozen"] > 50_000
    assert state["threshold"] == [100_000, 20, 20]
