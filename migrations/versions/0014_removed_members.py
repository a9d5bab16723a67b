"""removed_members: people an organization's admin removed, who may not link its Entra ID
tenant to their account again by themselves

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 04:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import idp.models.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "removed_members",
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("removed_by", sa.String(length=36), nullable=True),
        sa.Column("removed_at", idp.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_removed_members_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_removed_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "user_id", name=op.f("pk_removed_members")),
    )
    with op.batch_alter_table("removed_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_removed_members_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("removed_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_removed_members_user_id"))
    op.drop_table("removed_members")
