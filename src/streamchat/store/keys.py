"""API keys in the store: created, listed, revoked, and looked up by their hash.

The store never sees a key in clear: callers pass its SHA-256 (access/keys.py makes keys
and hashes them). Every method raises `StoreUnavailable` on database failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import guarded, writer
from .tables import api_keys

KeyKind = Literal["user", "service"]


@dataclass(slots=True, frozen=True)
class KeyLimits:
    """A key's own limits; None: the server's default."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    streams: int | None = None


@dataclass(slots=True, frozen=True)
class KeyRecord:
    """One key as stored (never the key itself)."""

    id: int
    prefix: str
    uid: int
    kind: KeyKind
    name: str | None
    limits: KeyLimits
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    models: tuple[str, ...] | None = None  # the models it may use; None: every one


class KeyStore:
    """The api_keys table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._writer = writer(engine)

    async def create(
        self,
        *,
        key_hash: str,
        prefix: str,
        uid: int,
        kind: KeyKind,
        name: str | None,
        limits: KeyLimits,
        models: tuple[str, ...] | None = None,
    ) -> KeyRecord:
        """Store a new key's hash (and the models it may use; None: every one); the record
        as stored."""
        values = {
            "hash": key_hash,
            "prefix": prefix,
            "uid": uid,
            "kind": kind,
            "name": name,
            "requests_per_minute": limits.requests_per_minute,
            "tokens_per_minute": limits.tokens_per_minute,
            "streams": limits.streams,
            "created_at": datetime.now(UTC),
            "models": None if models is None else ",".join(models),
        }
        async with guarded(), self._writer.begin() as connection:
            result = await connection.execute(insert(api_keys).values(values))
            key_id = result.inserted_primary_key
            assert key_id is not None
            row = (
                await connection.execute(select(api_keys).where(api_keys.c.id == key_id[0]))
            ).one()
        return _record(row)

    async def list(self) -> list[KeyRecord]:
        """Every key, oldest first (revoked ones too)."""
        async with guarded(), self.engine.connect() as connection:
            rows = await connection.execute(select(api_keys).order_by(api_keys.c.id))
            return [_record(row) for row in rows]

    async def revoke(self, key_id: int) -> bool:
        """Revoke a key; False if there is no such key or it was already revoked."""
        statement = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        async with guarded(), self._writer.begin() as connection:
            result = await connection.execute(statement)
        return bool(result.rowcount)

    async def find(self, key_hash: str) -> KeyRecord | None:
        """The key with this hash, revoked or not; one indexed query."""
        query = select(api_keys).where(api_keys.c.hash == key_hash)
        async with guarded(), self.engine.connect() as connection:
            row = (await connection.execute(query)).one_or_none()
        return None if row is None else _record(row)

    async def touch(self, key_id: int, at: datetime) -> None:
        """Record that the key was used at `at`."""
        statement = update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at)
        async with guarded(), self._writer.begin() as connection:
            await connection.execute(statement)


def _record(row: Row[Any]) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        prefix=row.prefix,
        uid=row.uid,
        kind=row.kind,
        name=row.name,
        limits=KeyLimits(row.requests_per_minute, row.tokens_per_minute, row.streams),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        models=None if row.models is None else tuple(row.models.split(",")),
    )
