"""sessions.replaced_by: the session that took over when one ended by re-authentication

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 15:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replaced_by", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_sessions_replaced_by", ["replaced_by"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_replaced_by")
        batch_op.drop_column("replaced_by")
