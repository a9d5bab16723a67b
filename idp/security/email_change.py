"""Changing one's email address, confirmed from the new mailbox (OWASP ASVS 4.0 V2.5 / the
Authentication Cheat Sheet "Changing A User's Registered Email Address").

1. The signed-in user types the new address and their password (rate limited with every other
   password re-entry). The new address is then counted by the per-address and per-IP limits
   of every form that mails a typed address (:mod:`idp.security.mail_requests`).
2. A link is mailed to the new address; a notice goes to the current one, so the owner learns
   of a change they did not ask for. An address used by another account gets the same answer
   (the form must not tell which addresses have an account, as sign-up and password reset do
   not): its owner is told instead, and no link is made; the check at confirmation keeps the
   address from being taken anyway. The link's token is random (256 bits); only its SHA-256
   is stored. It works once and expires after ``IDP_EMAIL_CHANGE_LINK_MINUTES``. A newer
   request replaces older ones; a password change or reset cancels it (:func:`cancel_pending`).
3. Opening the link shows the new address and a button (a mail scanner's GET changes
   nothing); pressing it changes the address, which is then verified by construction. The
   unused links mailed to the old address (password reset, unlock, verification) stop working
   in the same transaction: whoever keeps the old mailbox must not reset the password later.

An account whose address is in a domain whose organization enforces SSO is managed by that
organization (its members sign in with Entra ID only, see :mod:`idp.flows.login`): its address
cannot be changed here, neither asked for nor confirmed, since a private address would escape
the enforcement (a password reset to it, then a password sign-in).

Kept apart from other mail verification on purpose: it is one table and one service, to be
folded into a general email verification service.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

from flask_babel import gettext, lazy_gettext
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.accounts import AccountError, AccountService, normalize_email, validate_email
from idp.events import Actor, EventTag, record_event
from idp.mail import messages, queue_mail
from idp.models import EmailChange, OneTimeToken, User, utcnow
from idp.security.mail_requests import MailRequestLimits
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


class ManagedByOrganization(EmailChangeError):
    """The account's address is in a domain where its organization enforces SSO."""

    message = lazy_gettext(
        "Your organization manages this address; ask its administrator to change it."
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class EmailChangeService:
    """``sso_enforced`` tells whether an address's domain enforces SSO (the lookup of the
    sign-in page, :meth:`~idp.federation.connections.ConnectionService.enforces_sso`);
    ``mail_limits`` counts the typed addresses with the other forms that mail one."""

    def __init__(
        self,
        db: Session,
        accounts: AccountService,
        confirmation: PasswordConfirmation,
        mail_limits: MailRequestLimits,
        sso_enforced: Callable[[str], bool],
        *,
        issuer: str,
        valid_minutes: int,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.confirmation = confirmation
        self.mail_limits = mail_limits
        self.sso_enforced = sso_enforced
        self.issuer = issuer.rstrip("/")
        self.valid = timedelta(minutes=valid_minutes)
        self.actor = actor

    def managed(self, user: User) -> bool:
        """Whether the account's organization manages its address (SSO enforced)."""
        return self.sso_enforced(user.email)

    def request(self, user: User, new_email: str, password: str) -> str:
        """Mail a confirmation link to ``new_email``, or a notice to its owner when another
        account has it; returns the address as typed (the same answer either way). Raises
        :class:`ManagedByOrganization` (before anything else), :class:`EmailChangeError`,
        :class:`~idp.security.reauth.WrongPassword` or
        :class:`~idp.security.ratelimit.RateLimited` (password re-entries, or mails to this
        address or from this IP address). Commits."""
        if self.managed(user):
            raise ManagedByOrganization
        try:
            new_email = validate_email(new_email)
        except AccountError:
            raise EmailChangeError(gettext("Enter a valid email address.")) from None
        if normalize_email(new_email) == user.email_normalized:
            raise EmailChangeError(gettext("This is already your email address."))
        self.confirmation.check(user, password)
        # Counted before the address is looked up: the same for a free and a taken address.
        self.mail_limits.check(self.actor.ip if self.actor else "", new_email)
        cancel_pending(self.db, user.id)  # a newer request replaces older ones, either way
        owner = self.accounts.find_user_by_email(new_email)
        if owner is not None:
            queue_mail(self.db, owner.email, messages.email_change_existing_address(owner))
        else:
            self._mail_link(user, new_email)
        queue_mail(self.db, user.email, messages.email_change_notice(user, new_email))
        record_event(self.db, EventTag.EMAIL_CHANGE_REQUESTED, user_id=user.id, actor=self.actor)
        self.db.commit()
        return new_email

    def _mail_link(self, user: User, new_email: str) -> None:
        now = utcnow()
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

    def confirmable(self, token: str) -> EmailChange:
        """:meth:`pending`, for the confirmation page: raises :class:`ManagedByOrganization`
        when SSO became enforced for the account's current address since the request (the
        button would be refused, so the page says why instead of offering it)."""
        change = self.pending(token)
        user = self.db.get(User, change.user_id)
        if user is None:
            raise LinkInvalid
        if self.managed(user):
            raise ManagedByOrganization
        return change

    def confirm(self, token: str) -> User:
        """Apply the change of a link (once) and void the links mailed to the old address.
        Raises :class:`EmailChangeError` (:class:`ManagedByOrganization` when SSO became
        enforced for the current address since the request), changing nothing. Commits."""
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
        if self.managed(user):
            self.db.rollback()
            raise ManagedByOrganization
        other = self.accounts.find_user_by_email(change.new_email)
        if other is not None and other.id != user.id:
            self.db.rollback()
            raise EmailChangeError(gettext("This address now belongs to another account."))
        user.email = change.new_email
        user.email_normalized = normalize_email(change.new_email)
        user.email_verified = True  # the link was opened from that mailbox
        void_mailed_links(self.db, user.id)
        record_event(self.db, EventTag.EMAIL_CHANGED, user_id=user.id, actor=self.actor)
        try:
            self.db.commit()
        except IntegrityError:  # taken at the same moment by another account
            self.db.rollback()
            raise EmailChangeError(
                gettext("This address now belongs to another account.")
            ) from None
        return user


def void_mailed_links(db: Session, user_id: str) -> int:
    """Delete the account's unused one-time links (in ``db``'s transaction); how many.

    Every ``one_time_tokens`` purpose is a link mailed to the account's address: password
    reset, unlock, email verification (and the ``email_change`` verification purpose, mailed
    to a pending address that a confirmed change supersedes). A reset link is bound to the
    password, not to the address, so after an email change it would still work for whoever
    keeps the old mailbox. A newer link can be asked for at the new address."""
    voided = db.execute(
        delete(OneTimeToken).where(OneTimeToken.user_id == user_id, OneTimeToken.used_at.is_(None))
    )
    return int(getattr(voided, "rowcount", 0) or 0)
