"""Per-key models: the names of the models file a key may use.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add api_keys.models: comma-separated names; null, every model (the keys made before)."""
    op.add_column("api_keys", sa.Column("models", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop api_keys.models (SQLite needs a batch: it rebuilds the table)."""
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("models")
