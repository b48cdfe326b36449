"""The AI SDK's chat ids: a conversation may carry the id a `useChat` client gave it.

A `useChat` id is made by the client (or chosen by the app, e.g. a page's route), so it is
unique only within one user's chats: the index is on (uid, ui_chat_id), and two users with
the same id have two conversations.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add conversations.ui_chat_id and its unique index per user."""
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("ui_chat_id", sa.String(length=64), nullable=True))
    op.create_index(
        op.f("uq_conversations_uid_ui_chat_id"),
        "conversations",
        ["uid", "ui_chat_id"],
        unique=True,
    )


def downgrade() -> None:
    """Drop the index and the column."""
    op.drop_index(op.f("uq_conversations_uid_ui_chat_id"), table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("ui_chat_id")
