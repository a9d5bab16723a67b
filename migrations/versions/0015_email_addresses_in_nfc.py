"""Compared email addresses in Unicode NFC: users.email_normalized and
invitations.email_normalized written by earlier releases (strip + lower only) are brought to
the form this release compares in (idp.accounts.normalize_email), so an address stored with
decomposed letters ("o" + combining diaeresis) is still found when its owner signs in.

Only rows with a non-ASCII character are read. A user whose NFC form is already another
account's address keeps the old value (the unique index allows one; the operator sees a
warning and decides which account keeps the address).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 05:20:00
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def _non_ascii(column: sa.ColumnClause[str]) -> sa.ColumnElement[bool]:
    """Rows holding a character outside printable ASCII (NFC leaves ASCII as it is)."""
    if op.get_bind().dialect.name == "postgresql":
        return column.op("~", is_comparison=True)("[^ -~]")
    return column.op("GLOB", is_comparison=True)("*[^ -~]*")


def _to_nfc(name: str, unique: bool) -> None:
    bind = op.get_bind()
    address = sa.column("email_normalized", sa.String)
    row_id = sa.column("id", sa.String)
    table = sa.table(name, row_id, address)
    rows = bind.execute(sa.select(row_id, address).where(_non_ascii(address))).all()
    for found, stored in rows:
        wanted = unicodedata.normalize("NFC", stored)
        if wanted == stored:
            continue
        if unique and bind.execute(sa.select(row_id).where(address == wanted)).first():
            log.warning("%s %s: its address in NFC is another row's; left as it was", name, found)
            continue
        bind.execute(sa.update(table).where(row_id == found).values(email_normalized=wanted))


def upgrade() -> None:
    _to_nfc("users", unique=True)
    _to_nfc("invitations", unique=False)


def downgrade() -> None:
    pass  # NFC addresses are valid addresses for the previous release too
