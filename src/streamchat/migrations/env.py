"""Alembic's entry point: migrate over the connection we are given, or one of our own."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text

from streamchat.config import Settings
from streamchat.store.engine import create_engine, writer
from streamchat.store.tables import metadata

# Any constant: serialises migrations of several nodes starting at once on PostgreSQL.
_MIGRATION_LOCK = 7_215_403_911


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; batch mode does that for later revisions.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        context.run_migrations()


async def _run_with_own_engine() -> None:
    """For the `alembic` command line: the database of STREAMCHAT_DATABASE_URL."""
    settings = Settings()
    engine = create_engine(
        settings.database_url,
        schema=settings.database_schema,
        timeout=settings.database_timeout_seconds,
    )
    try:
        async with writer(engine).begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported")
given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    asyncio.run(_run_with_own_engine())
