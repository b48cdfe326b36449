"""API keys for the tests, made by the real `streamchat keys` command on a server's database."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .dbs import DatabaseSettings
from .test_cli import run_streamchat


async def streamchat(db: DatabaseSettings, *args: str) -> tuple[int, str, str]:
    """`python -m streamchat …` on the database of `db`: exit code, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHAT_")}
    env.update({f"STREAMCHAT_{k.upper()}": v for k, v in db.items()})
    return await run_streamchat(*args, env=env)


async def create_key(db: DatabaseSettings, uid: int, *extra: str) -> str:
    """A new key for `uid` (extra: `--service`, limits, …)."""
    code, out, err = await streamchat(db, "keys", "create", "--uid", str(uid), *extra)
    assert code == 0, err
    return out.strip()


@dataclass
class Keys:
    """The keys of one test database: two users, a service, and a revoked one of user 7's."""

    user7: str
    user8: str
    service: str
    revoked: str


async def make_keys(db: DatabaseSettings) -> Keys:
    """Create the keys of `Keys` on `db`."""
    # One after the other: the first one migrates a new database.
    user7 = await create_key(db, 7, "--name", "seven")
    user8 = await create_key(db, 8)
    service = await create_key(db, 1, "--service", "--name", "backend")
    revoked = await create_key(db, 7, "--name", "old")
    code, out, _ = await streamchat(db, "keys", "list")
    assert code == 0
    # ID  PREFIX  UID  KIND  NAME  CREATED…
    old_id = next(row.split()[0] for row in out.splitlines()[1:] if row.split()[4] == "old")
    code, _, err = await streamchat(db, "keys", "revoke", old_id)
    assert code == 0, err
    return Keys(user7, user8, service, revoked)


def bearer(key: str) -> dict[str, str]:
    """The header that carries `key`."""
    return {"Authorization": f"Bearer {key}"}
