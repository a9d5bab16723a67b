"""Changing one's email address, confirmed from the new mailbox (OWASP ASVS 4.0 V2.5 / the
Authentication Cheat Sheet "Changing A User's Registered Email Address").

1. The signed-in user types the new address and their password (rate limited with every other
   password re-entry). An address used by another account is refused.
2. A link is mailed to the new address; a notice goes to the current one, so the owner learns
   of a change they did not ask for. The link's token is random (256 bits); only its SHA-256
   is stored. It works once and expires after ``IDP_EMAIL_CHANGE_LINK_MINUTES``. A newer
   request replaces older ones; a password change or reset cancels it (:func:`cancel_pending`).
3. Opening the link shows the new address and a button (a mail scanner's GET changes
   nothing); pressing it changes the address, which is then verified by construction.

Kept apart from other mail verification on purpose: it is one table and one service, to be
folded into a general email verification service.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask_babel import gettext, lazy_gettext
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.accounts import AccountError, AccountService, normalize_email, validate_email
from idp.events import Actor, EventTag, record_event
from idp.mail import messages, queue_mail
from idp.models import EmailChange, User, utcnow
from idp.security.pending_email_changes import cancel_pending
from idp.security.reauth import PasswordConfirmation


class EmailChangeError(Exception):
    """The change was refused; ``message`` is for the account's owner."""

    message = lazy_gettext("Your email address could not be changed.")

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class LinkInvalid(EmailChangeError):
    message = lazy_gettext(
        "This confirmation link is not valid: it was already used, replaced by a newer one, "
        "cancelled by a password change, or it expired. Ask for the change again."
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class EmailChangeService:
    def __init__(
        self,
        db: Session,
        accounts: AccountService,
        confirmation: PasswordConfirmation,
        *,
        issuer: str,
        valid_minutes: int,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.confirmation = confirmation
        self.issuer = issuer.rstrip("/")
        self.valid = timedelta(minutes=valid_minutes)
        self.actor = actor

    def request(self, user: User, new_email: str, password: str) -> str:
        """Mail a confirmation link to ``new_email``; returns the address as it will be
        stored. Raises :class:`EmailChangeError`, :class:`~idp.security.reauth.WrongPassword`
        or :class:`~idp.security.ratelimit.RateLimited`. Commits."""
        try:
            new_email = validate_email(new_email)
        except AccountError:
            raise EmailChangeError(gettext("Enter a valid email address.")) from None
        if normalize_email(new_email) == user.email_normalized:
            raise EmailChangeError(gettext("This is already your email address."))
        self.confirmation.check(user, password)
        if self.accounts.find_user_by_email(new_email) is not None:
            raise EmailChangeError(gettext("This address belongs to another account."))
        now = utcnow()
        cancel_pending(self.db, user.id)
        token = secrets.token_urlsafe(32)
        change = EmailChange(
            user_id=user.id,
            new_email=new_email,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + self.valid,
        )
        self.db.add(change)
        link = f"{self.issuer}/account/email/confirm/{token}"
        queue_mail(
            self.db,
            new_email,
            messages.email_change_confirm(user, new_email, link, change.expires_at),
        )
        queue_mail(self.db, user.email, messages.email_change_notice(user, new_email))
        record_event(self.db, EventTag.EMAIL_CHANGE_REQUESTED, user_id=user.id, actor=self.actor)
        self.db.commit()
        return new_email

    def pending(self, token: str) -> EmailChange:
        """The unexpired, unused change behind a link, or :class:`LinkInvalid`."""
        if not token or len(token) > 100:
            raise LinkInvalid
        change = self.db.scalar(
            select(EmailChange).where(EmailChange.token_hash == hash_token(token))
        )
        if change is None or change.used_at is not None or change.expires_at <= utcnow():
            raise LinkInvalid
        return change

    def confirm(self, token: str) -> User:
        """Apply the change of a link (once). Raises :class:`EmailChangeError`. Commits."""
        change = self.pending(token)
        claimed = self.db.execute(
            update(EmailChange)
            .where(EmailChange.id == change.id, EmailChange.used_at.is_(None))
            .values(used_at=utcnow())
        )
        if getattr(claimed, "rowcount", 0) != 1:
            self.db.rollback()
            raise LinkInvalid
        user = self.db.get(User, change.user_id)
        if user is None:
            raise LinkInvalid
        other = self.accounts.find_user_by_email(change.new_email)
        if other is not None and other.id != user.id:
            self.db.rollback()
            raise EmailChangeError(gettext("This address now belongs to another account."))
        user.email = change.new_email
        user.email_normalized = normalize_email(change.new_email)
        user.email_verified = True  # the link was opened from that mailbox
        record_event(self.db, EventTag.EMAIL_CHANGED, user_id=user.id, actor=self.actor)
        try:
            self.db.commit()
        except IntegrityError:  # taken at the same moment by another account
            self.db.rollback()
            raise EmailChangeError(
                gettext("This address now belongs to another account.")
            ) from None
        return user
