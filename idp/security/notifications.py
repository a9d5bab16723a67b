"""Security mails about an account (locked, unlocked), queued in the caller's transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from idp.mail import messages, queue_mail
from idp.models import User


class AccountNotifier:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def account_locked(self, db: Session, user: User, unlock_token: str) -> None:
        unlock_url = f"{self.issuer}/unlock/{unlock_token}"
        queue_mail(db, user.email, messages.account_locked(user, unlock_url))

    def account_unlocked(
        self, db: Session, user: User, unlocked_by: str, organization: str = ""
    ) -> None:
        """Tell the owner the account was unlocked (see :func:`messages.account_unlocked`)."""
        queue_mail(db, user.email, messages.account_unlocked(user, unlocked_by, organization))
