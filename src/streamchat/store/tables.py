"""The tables of the conversation store, as SQLAlchemy Core metadata.

The migrations (`streamchat/migrations`) create exactly this; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

ROLES = ("user", "assistant", "system")
STATUSES = ("streaming", "complete", "cancelled", "interrupted", "error")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps them naive, PostgreSQL as timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store UTC; SQLite drops the offset, so it must already be UTC."""
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("uid", BigInteger, nullable=False),
    Column("title", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The id a `useChat` client gave the chat (apis/ui): unique per user, not globally, as
    # clients make it up.
    Column("ui_chat_id", String(64)),
    # A user's conversations, newest first, and the cursor that pages through them.
    Index(None, "uid", "updated_at", "id"),
    Index("uq_conversations_uid_ui_chat_id", "uid", "ui_chat_id", unique=True),
)

messages = Table(
    "messages",
    metadata,
    # Insertion order: a user message and its answer are created in the same instant.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(32), nullable=False, unique=True),
    Column(
        "conversation_id",
        String(32),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("model", String(200)),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("error", Text),
    Column("stream_id", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # A message of the Responses API: its items (text, function calls, their outputs) as
    # JSON, and the response it belongs to; `content` keeps them as text for the history.
    Column("items", Text),
    Column("response_id", String(64)),
    CheckConstraint(f"role IN {ROLES}", name="role"),
    CheckConstraint(f"status IN {STATUSES}", name="status"),
    # A conversation's messages in order (and the history sent back to the model).
    Index(None, "conversation_id", "seq"),
    # The few answers still streaming, which start-up marks as interrupted. The migration
    # (0001) makes it partial, `WHERE status = 'streaming'`, on both databases; the schema
    # is only ever made by the migrations, and naming the clause here as `postgresql_where`
    # loaded SQLAlchemy's PostgreSQL dialect into every server on SQLite (1.9 MB resident).
    Index("ix_messages_streaming", "status"),
)

# A response's messages (its input and its answer), found by the response.
Index(None, messages.c.response_id)

responses = Table(
    "responses",
    metadata,
    # `resp_` and the id of the stream it was generated in.
    Column("id", String(64), primary_key=True),
    Column(
        "conversation_id",
        String(32),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("answer_id", String(32), nullable=False),
    Column("previous_response_id", String(64)),
    # What the response object repeats of its request (model, instructions, tools, …), JSON.
    Column("request", Text, nullable=False),
    # The response object as it ended, JSON; null while it is generated.
    Column("body", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "conversation_id"),
)

KEY_KINDS = ("user", "service")

api_keys = Table(
    "api_keys",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    # SHA-256 of the whole key, hex: keys have full entropy, so a fast hash is right.
    Column("hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(200), nullable=True),
    # Per-key limits (DESIGN.md §8); null: the server's defaults.
    Column("requests_per_minute", Integer, nullable=True),
    Column("tokens_per_minute", Integer, nullable=True),
    Column("streams", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    # The models (their names, comma-separated) the key may use; null: every one.
    Column("models", Text, nullable=True),
    CheckConstraint(f"kind IN {KEY_KINDS}", name="kind"),
)
