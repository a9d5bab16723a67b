"""Email verification links: proof that an address reaches the account's owner.

OpenID Connect Core 1.0 §5.1 defines ``email_verified``: true when the provider "took
affirmative and reasonable steps to ensure that this e-mail address was controlled by the
End-User at the time the verification was performed". The step taken here is a mailed link
(OWASP Authentication Cheat Sheet; NIST SP 800-63A §5.3.1 "address confirmation"):

- the token is 256 random bits; only its SHA-256 is stored (``one_time_tokens``);
- it is bound to the user, to the address it verifies and to its purpose
  (:class:`VerificationPurpose`), single-use (one conditional UPDATE spends it), expiring
  (``IDP_EMAIL_VERIFICATION_LINK_HOURS``) and superseded by a newer link of the same user and
  purpose;
- opening the link (GET) only shows a page; the address is verified by the page's button (POST),
  so mail scanners that fetch links do not verify anything;
- a same-origin path to return to after signing in (``return_to``, e.g. the authorization
  request the person started from) may be kept with the link, server-side: the mailed URL
  stays short, and the caller checks it with ``safe_next`` before storing and before using it.

Two purposes share the mechanism:

``account``
    the account's own address (sign-up, ``idp user create --unverified``): :meth:`confirm`
    sets ``users.email_verified``. The link is ``/verify-email/<token>``.
``email_change``
    a *pending* new address. :meth:`confirm` only returns the :class:`VerifiedAddress`; the
    caller (the email change of the account pages) applies the change in the same transaction.
    The link is ``/account/email/verify/<token>``, served by that code.

Usage by the email change, for instance::

    verification = EmailVerificationService(db, settings, accounts, actor=actor)
    verification.start_email_verification(user, new_address, VerificationPurpose.EMAIL_CHANGE)
    db.commit()                                   # the mail goes out through the outbox
    ...
    verified = verification.confirm(token, VerificationPurpose.EMAIL_CHANGE)
    user.email = verified.address  # (and email_normalized, email_verified=True, an event)
    db.commit()
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from idp.accounts import AccountService, normalize_email
from idp.events import Actor, EventTag, record_event
from idp.mail import messages, queue_mail
from idp.models import OneTimeToken, User, utcnow
from idp.models.credentials import RETURN_TO_MAX
from idp.security.devices import hash_key
from idp.security.mail_requests import MailRequestLimits
from idp.security.ratelimit import RateLimited
from idp.settings import Settings

log = logging.getLogger(__name__)


class VerificationPurpose(enum.StrEnum):
    """What a verification link is for (stored as ``one_time_tokens.purpose``)."""

    ACCOUNT = "verify_email"
    EMAIL_CHANGE = "email_change"


# Where each purpose's link leads, below the issuer.
LINK_PATHS = {
    VerificationPurpose.ACCOUNT: "/verify-email/",
    VerificationPurpose.EMAIL_CHANGE: "/account/email/verify/",
}


class VerificationLinkError(Exception):
    """A link that cannot be used: unknown, used, expired, superseded or stale."""


@dataclass(frozen=True)
class VerifiedAddress:
    """What a spent verification link proved: ``user_id`` controls ``address``."""

    user_id: str
    address: str
    purpose: VerificationPurpose
    # Where to go after signing in (a same-origin path kept with the link), or "".
    return_to: str = ""


class EmailVerificationService:
    def __init__(
        self,
        db: Session,
        settings: Settings,
        accounts: AccountService,
        *,
        actor: Actor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.accounts = accounts
        self.actor = actor
        self.clock = clock

    # Issuing -------------------------------------------------------------------------------
    def issue(
        self, user: User, address: str, purpose: VerificationPurpose, return_to: str = ""
    ) -> str:
        """A new raw token for ``address``, superseding the user's earlier links of this
        purpose (in the caller's transaction). ``return_to``, a same-origin path the caller
        checked, is kept with the link (not in it) for after the owner signs in."""
        self.db.execute(
            delete(OneTimeToken).where(
                OneTimeToken.user_id == user.id,
                OneTimeToken.purpose == str(purpose),
                OneTimeToken.used_at.is_(None),
            )
        )
        token = secrets.token_urlsafe(32)
        now = self.clock()
        self.db.add(
            OneTimeToken(
                purpose=str(purpose),
                user_id=user.id,
                token_hash=hash_key(token),
                address=address.strip(),
                return_to=return_to if 0 < len(return_to) <= RETURN_TO_MAX else None,
                created_at=now,
                expires_at=now + timedelta(hours=self.settings.email_verification_link_hours),
            )
        )
        return token

    def link_url(self, token: str, purpose: VerificationPurpose) -> str:
        return f"{self.settings.issuer}{LINK_PATHS[purpose]}{token}"

    def start_email_verification(
        self,
        user: User,
        address: str | None = None,
        purpose: VerificationPurpose = VerificationPurpose.ACCOUNT,
        *,
        return_to: str = "",
    ) -> str:
        """Issue a link for ``address`` (default: the account's address) and queue the mail
        that carries it, to that address. The caller commits; returns the raw token."""
        address = (address or user.email).strip()
        token = self.issue(user, address, purpose, return_to)
        queue_mail(
            self.db,
            address,
            messages.verify_email(
                user,
                address,
                self.link_url(token, purpose),
                self.settings.email_verification_link_hours,
                change=purpose is VerificationPurpose.EMAIL_CHANGE,
            ),
        )
        return token

    # Using ---------------------------------------------------------------------------------
    def find(
        self, token: str, purpose: VerificationPurpose = VerificationPurpose.ACCOUNT
    ) -> tuple[OneTimeToken, User]:
        """The usable link and its user, or :class:`VerificationLinkError`."""
        if not token or len(token) > 100:
            raise VerificationLinkError("unknown")
        row = self.db.scalar(
            select(OneTimeToken).where(
                OneTimeToken.token_hash == hash_key(token),
                OneTimeToken.purpose == str(purpose),
            )
        )
        if row is None or row.address is None:
            raise VerificationLinkError("unknown")
        user = self.db.get(User, row.user_id)
        if user is None or row.used_at is not None:
            raise VerificationLinkError("used")
        if row.expires_at <= self.clock():
            raise VerificationLinkError("expired")
        if purpose is VerificationPurpose.ACCOUNT and (
            normalize_email(row.address) != user.email_normalized
        ):
            raise VerificationLinkError("stale")  # the account's address changed since
        return row, user

    def confirm(
        self, token: str, purpose: VerificationPurpose = VerificationPurpose.ACCOUNT
    ) -> VerifiedAddress:
        """Spend the link (atomically: of two concurrent uses one wins) and return what it
        proved. For :attr:`VerificationPurpose.ACCOUNT` the account's address becomes verified
        and the event is recorded. The caller commits."""
        row, user = self.find(token, purpose)
        spent = self.db.execute(
            update(OneTimeToken)
            .where(OneTimeToken.id == row.id, OneTimeToken.used_at.is_(None))
            .values(used_at=self.clock())
            .execution_options(synchronize_session=False)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            self.db.rollback()
            raise VerificationLinkError("used")
        assert row.address is not None
        if purpose is VerificationPurpose.ACCOUNT:
            user.email_verified = True
            record_event(
                self.db,
                EventTag.EMAIL_VERIFIED,
                user_id=user.id,
                organization_id=self.accounts.primary_organization_id(user.id),
                actor=self.actor,
                details={"address": row.address},
            )
        return VerifiedAddress(user.id, row.address, purpose, row.return_to or "")


class VerificationResender:
    """A new verification link for an unverified account whose password was just typed right
    (sign-in answers it like a wrong password, see :mod:`idp.security.authentication`),
    within the per-address and per-IP limits of every mailed link; past them, nothing is
    sent and nothing is said."""

    def __init__(self, verification: EmailVerificationService, limits: MailRequestLimits) -> None:
        self.verification = verification
        self.limits = limits

    def resend_verification(self, user: User, ip: str, return_to: str) -> None:
        """Queue the link in the caller's transaction (the caller commits)."""
        try:
            self.limits.check(ip, user.email)
        except RateLimited:
            log.info("verification link for user %s not sent again: limit reached", user.id)
            return
        self.verification.start_email_verification(user, return_to=return_to)
