"""Databases for the tests: a SQLite file each, or a fresh schema in the shared PostgreSQL.

PostgreSQL is the machine's (127.0.0.1:5432, database `test`, or STREAMCHAT_TEST_POSTGRES_URL);
each run works in its own schemas, `sc_<run>_<n>`, dropped at the end. The server is never
stopped: other people use it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from streamchat.store import Store, create_engine
from streamchat.store.tables import conversations, messages

POSTGRES_URL = os.environ.get(
    "STREAMCHAT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
KINDS = ["sqlite", "postgres"]

# Databases that cannot be reached, one per kind: `{port}` is to be a closed port.
UNREACHABLE = pytest.mark.parametrize(
    "unreachable_url",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:{port}/test",
        "sqlite+aiosqlite:////nonexistent-dir-{port}/streamchat.db",
    ],
    ids=["postgres-closed-port", "sqlite-no-such-directory"],
)

# STREAMCHAT_ settings (lower case, without the prefix) that point a server at a database.
DatabaseSettings = dict[str, str]


def sqlite_settings(directory: str) -> DatabaseSettings:
    """A new SQLite file in `directory`."""
    path = Path(directory) / f"streamchat-{uuid.uuid4().hex[:12]}.db"
    return {"database_url": f"sqlite+aiosqlite:///{path}"}


class Postgres:
    """Makes schemas in the shared test database and drops them all at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.run = uuid.uuid4().hex[:8]
        self.schemas: list[str] = []
        self._engine = create_async_engine(url, isolation_level="AUTOCOMMIT")

    async def new_schema(self) -> str:
        """An empty schema of this run."""
        name = f"sc_{self.run}_{len(self.schemas)}"
        async with self._engine.connect() as connection:
            await connection.execute(text(f"CREATE SCHEMA {name}"))
        self.schemas.append(name)
        return name

    async def settings(self, url: str | None = None) -> DatabaseSettings:
        """A server's settings for a new schema (through `url`, a proxy say, if given)."""
        return {"database_url": url or self.url, "database_schema": await self.new_schema()}

    async def close(self) -> None:
        """Drop every schema of this run."""
        async with self._engine.connect() as connection:
            for name in self.schemas:
                await connection.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        await self._engine.dispose()


class Databases:
    """This run's databases: new ones per test, or one shared per kind."""

    def __init__(self, directory: str, postgres: Postgres) -> None:
        self.directory = directory
        self.postgres = postgres
        self._shared: dict[str, DatabaseSettings] = {}

    async def new(self, kind: str) -> DatabaseSettings:
        """Settings for a new, empty database of `kind`."""
        if kind == "sqlite":
            return sqlite_settings(self.directory)
        return await self.postgres.settings()

    async def shared(self, kind: str) -> DatabaseSettings:
        """The same database of `kind` for every caller, for tests that need no fresh one."""
        if kind not in self._shared:
            self._shared[kind] = await self.new(kind)
        return self._shared[kind]


@pytest.fixture(scope="session")
def scratch() -> Iterator[str]:
    """A directory for this run's SQLite files."""
    directory = tempfile.mkdtemp(prefix="streamchat-test-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def databases(scratch: str) -> AsyncIterator[Databases]:
    """This run's SQLite files and PostgreSQL schemas; the schemas are dropped at the end."""
    postgres = Postgres(POSTGRES_URL)
    try:
        yield Databases(scratch, postgres)
    finally:
        await postgres.close()


@pytest.fixture(params=KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    """Run the test on SQLite and on PostgreSQL."""
    kind: str = request.param
    return kind


@pytest_asyncio.fixture
async def database(db_kind: str, databases: Databases) -> DatabaseSettings:
    """Settings for a new, empty database of each kind."""
    return await databases.new(db_kind)


def open_store(settings: DatabaseSettings, *, progress_seconds: float = 0.2) -> Store:
    """A store on the database of `settings` (not started), saving progress every 0.2 s."""
    engine = create_engine(
        settings["database_url"], schema=settings.get("database_schema", ""), timeout=5
    )
    return Store(engine, progress_seconds=progress_seconds)


@pytest_asyncio.fixture
async def store(database: DatabaseSettings) -> AsyncIterator[Store]:
    """A started store on a new database of each kind."""
    opened = open_store(database)
    await opened.start(run_migrations=True)
    yield opened
    await opened.close()


async def row_counts(db: DatabaseSettings) -> tuple[int, int]:
    """How many conversations and messages the database of `db` holds."""
    engine = create_engine(db["database_url"], schema=db.get("database_schema", ""))
    try:
        async with engine.connect() as connection:
            c = await connection.scalar(select(func.count()).select_from(conversations))
            m = await connection.scalar(select(func.count()).select_from(messages))
    finally:
        await engine.dispose()
    return int(c or 0), int(m or 0)
