"""Unconfirmed email changes of an account (:mod:`idp.security.email_change`), voided.

Apart from the email change service so that the password change and reset services can
cancel them without importing it (it depends on them through the password re-entry check).
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from idp.models import EmailChange


def cancel_pending(db: Session, user_id: str) -> int:
    """Void the account's unconfirmed email changes (in ``db``'s transaction); how many.

    A newer request replaces the older ones, and a password change or reset cancels them: the
    notice to the current address tells an owner who did not ask for the change to change
    the password, and that must stop someone who got into the account from confirming an
    address of theirs afterwards (and taking the account with a reset mailed there)."""
    voided = db.execute(
        delete(EmailChange).where(EmailChange.user_id == user_id, EmailChange.used_at.is_(None))
    )
    return int(getattr(voided, "rowcount", 0) or 0)
