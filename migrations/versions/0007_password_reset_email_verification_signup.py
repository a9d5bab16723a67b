"""password reset, email verification, sign-up: the address a one-time token verifies;
accounts that exist before this revision count as verified (operators made them)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 12:58:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("one_time_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("address", sa.String(length=320), nullable=True))
    # Every account so far was made by an operator (`idp user create`) or by SSO from a
    # domain its owner verified: their addresses are vouched for.
    users = sa.table("users", sa.column("email_verified", sa.Boolean()))
    op.execute(users.update().values(email_verified=True))


def downgrade() -> None:
    with op.batch_alter_table("one_time_tokens", schema=None) as batch_op:
        batch_op.drop_column("address")
