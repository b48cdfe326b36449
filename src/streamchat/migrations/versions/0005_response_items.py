"""The Responses API's state: a message's structured items, and the responses themselves.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `items` and `response_id` to messages, and the responses table."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("items", sa.Text(), nullable=True))
        batch.add_column(sa.Column("response_id", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_messages_response_id"), "messages", ["response_id"])
    op.create_table(
        "responses",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("answer_id", sa.String(length=32), nullable=False),
        sa.Column("previous_response_id", sa.String(length=64), nullable=True),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_responses_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_responses")),
    )
    op.create_index(op.f("ix_responses_conversation_id"), "responses", ["conversation_id"])


def downgrade() -> None:
    """Drop the responses table and the two columns."""
    op.drop_index(op.f("ix_responses_conversation_id"), table_name="responses")
    op.drop_table("responses")
    op.drop_index(op.f("ix_messages_response_id"), table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("response_id")
        batch.drop_column("items")
