"""sign-up through the outbox: which accounts sign-up made (deleted when never verified);
where a reset or verification link returns to after sign-in

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 13:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Accounts made before this revision by sign-up are not marked: they are never purged
    # (being unable to tell them from operator-made unverified accounts, we keep them).
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "created_by_signup", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    with op.batch_alter_table("one_time_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("return_to", sa.String(length=2000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("one_time_tokens", schema=None) as batch_op:
        batch_op.drop_column("return_to")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("created_by_signup")
