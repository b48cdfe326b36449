"""The conversation store: conversations and their messages, in SQLite or PostgreSQL.

SQLAlchemy Core (not the ORM): the service reads rows into the contract's models, and the
chat path's writes are grouped, many answers per transaction (writes.py), so there are no
objects to track.
"""

from .conversations import NewTurn, Store
from .engine import StoreUnavailable, create_engine, migrate
from .responses import ItemRow, NewResponse, ResponseStore, StoredResponse

__all__ = [
    "ItemRow",
    "NewResponse",
    "NewTurn",
    "ResponseStore",
    "Store",
    "StoreUnavailable",
    "StoredResponse",
    "create_engine",
    "migrate",
]
