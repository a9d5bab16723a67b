"""SSO connections: certificate credentials (client_assertion); request id on events

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 13:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sso_connections", schema=None) as batch_op:
        batch_op.alter_column(
            "client_secret", existing_type=sa.String(length=1000), type_=sa.Text()
        )
        batch_op.add_column(sa.Column("certificate", sa.Text(), server_default="", nullable=False))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("request_id", sa.String(length=64), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("request_id")
    with op.batch_alter_table("sso_connections", schema=None) as batch_op:
        batch_op.drop_column("certificate")
        batch_op.alter_column(
            "client_secret", existing_type=sa.Text(), type_=sa.String(length=1000)
        )
