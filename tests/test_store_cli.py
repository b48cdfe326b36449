"""`streamchat db upgrade`, and a server whose database is not there at start-up."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from .dbs import UNREACHABLE, DatabaseSettings
from .servers import ServerProcess, free_port


async def db_upgrade(settings: DatabaseSettings) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
    env.update({f"STREAMCHAT_{k.upper()}": v for k, v in settings.items()})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamchat",
        "db",
        "upgrade",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_db_upgrade_migrates_once(database: DatabaseSettings) -> None:
    code, out, err = await db_upgrade(database)
    assert code == 0, err
    assert out == "database at revision 0005\n"
    assert "Running upgrade  -> 0001" in err
    assert "Running upgrade 0001 -> 0002" in err
    code, out, err = await db_upgrade(database)
    assert (code, out) == (0, "database at revision 0005\n")
    assert "Running upgrade" not in err


@UNREACHABLE
async def test_db_upgrade_reports_an_unreachable_database(unreachable_url: str) -> None:
    url = unreachable_url.format(port=free_port())
    code, out, err = await db_upgrade({"database_url": url, "database_timeout_seconds": "2"})
    assert code == 1
    assert out == ""
    assert "error: cannot migrate the database" in err


@UNREACHABLE
async def test_serve_will_not_start_without_its_database(unreachable_url: str) -> None:
    url = unreachable_url.format(port=free_port())
    server = ServerProcess({"STREAMCHAT_DATABASE_URL": url})
    with pytest.raises(RuntimeError, match="server exited") as caught:
        await server.start()
    assert "database unavailable" in str(caught.value)
    assert server.proc is not None
    assert server.proc.returncode != 0
