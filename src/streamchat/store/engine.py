"""The database engine: SQLite (WAL, busy timeout, one writer at a time) or PostgreSQL.

SQLAlchemy and driver errors become `StoreUnavailable` here (`guarded`), once. Alembic is
imported only when a migration is due (`migrate`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event, inspect, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import Failure, Kind

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
# Alembic announces each of its autogenerate plugins at INFO, at every start-up.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

# Written as `BEGIN <mode>` by SQLite connections; IMMEDIATE for transactions that write.
_BEGIN_MODE = "streamchat_sqlite_begin"
_TIMEOUT = "streamchat_sqlite_timeout"

# The newest migration's revision (migrations/versions/; test_store checks it is the
# scripts' head). A database already there is told by one query, without Alembic: importing
# it (with Mako, Pygments and every SQLAlchemy dialect) kept about 10 MB resident in a
# server that never migrates again.
HEAD_REVISION = "0004"
# Where Alembic records a database's revision (its default table, in the default schema).
_VERSION_TABLE = "alembic_version"
_READ_VERSION = text("SELECT version_num FROM alembic_version")


class StoreUnavailable(Failure):
    """The database could not be reached or failed."""

    kind = Kind.DATABASE
    key = "database_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail)
        self.detail: str = detail

    def __str__(self) -> str:
        return f"database unavailable: {self.detail}"


@asynccontextmanager
async def guarded() -> AsyncIterator[None]:
    """Turn the database's own errors (SQLAlchemy's, the driver's, the socket's) into ours."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("database unavailable: %s", detail)
        raise StoreUnavailable(detail) from exc


def values_at_fault(exc: Exception) -> bool:
    """Whether one write's values are at fault, not the database: it refused them, or the
    driver could not bind them (an integer past 64 bits: OverflowError, which once ended this
    task, every chat after it waiting forever)."""
    if not isinstance(exc, StoreUnavailable):
        return True
    cause = exc.__cause__
    if isinstance(cause, DBAPIError) and cause.connection_invalidated:
        return False
    return not isinstance(
        cause, OSError | TimeoutError | OperationalError | InterfaceError | PoolTimeout
    )


def create_engine(url: str, *, schema: str = "", timeout: float = 10.0) -> AsyncEngine:
    """An async engine for `url`; `schema` sets PostgreSQL's search_path."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, timeout)
    connect_args: dict[str, Any] = {"timeout": timeout, "command_timeout": timeout}
    if schema:
        connect_args["server_settings"] = {"search_path": schema}
    # pre_ping: after the server restarts, pooled connections are dead; test before use.
    return create_async_engine(
        parsed, connect_args=connect_args, pool_pre_ping=True, pool_timeout=timeout
    )


def _sqlite_engine(url: URL, timeout: float) -> AsyncEngine:
    # The driver's `timeout` is SQLite's busy timeout: how long a writer waits for the lock.
    engine = create_async_engine(
        url,
        connect_args={"timeout": timeout},
        pool_timeout=timeout,
        execution_options={_TIMEOUT: timeout},  # for `sqlite_writer`
    )
    _sqlite_setup(engine.sync_engine)
    return engine


def sqlite_writer(engine: AsyncEngine) -> Engine | None:
    """For a SQLite file: a synchronous engine on it (pysqlite), for a thread that writes.

    None for other databases and for in-memory SQLite (a second engine would see another
    database).
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    timeout = engine.get_execution_options().get(_TIMEOUT, 10.0)
    # One thread uses it, but closing at shutdown may happen from another.
    connect_args = {"timeout": timeout, "check_same_thread": False}
    sync = create_sync_engine(url.set(drivername="sqlite"), connect_args=connect_args)
    _sqlite_setup(sync)
    return sync.execution_options(**{_BEGIN_MODE: "IMMEDIATE"})


def _sqlite_setup(engine: Engine) -> None:
    """WAL, synchronous NORMAL, foreign keys, and a BEGIN we issue ourselves."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below), so that writers can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer nor each other.
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives the
        # process dying; only a power cut or OS crash may lose the last ones (never corrupt).
        # FULL cost 1.5 ms of fsync per commit here, on the path to every first token.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once ("database is
        # locked", no busy wait) if another writer committed in between; IMMEDIATE waits.
        mode = connection.get_execution_options().get(_BEGIN_MODE, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine, for transactions that write (IMMEDIATE on SQLite)."""
    return engine.execution_options(**{_BEGIN_MODE: "IMMEDIATE"})


def alembic_config() -> Config:
    """Alembic's configuration, pointing at the migrations shipped inside the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("streamchat").joinpath("migrations"))
    )
    return config


async def migrate(engine: AsyncEngine) -> str | None:
    """Upgrade the database to the latest revision; return that revision."""

    def upgrade(connection: Connection) -> str | None:
        if _current_revision(connection) == HEAD_REVISION:
            return HEAD_REVISION
        return _alembic_upgrade(connection)

    async with guarded(), writer(engine).begin() as connection:
        return await connection.run_sync(upgrade)


def _current_revision(connection: Connection) -> str | None:
    """The revision Alembic recorded in the database; None if none (or several heads)."""
    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    revisions = list(connection.execute(_READ_VERSION).scalars())
    return revisions[0] if len(revisions) == 1 else None


def _alembic_upgrade(connection: Connection) -> str | None:
    """Run the migrations still due, on `connection`; the revision reached."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return MigrationContext.configure(connection).get_current_revision()
