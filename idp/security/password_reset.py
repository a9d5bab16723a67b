"""Forgotten password: a mailed, single-use reset link, then a new password.

Follows the OWASP Forgot Password Cheat Sheet and NIST SP 800-63B §6.1.2.3 (a memorized secret
is replaced after proof of possession of a recovery secret sent to an address of record):

- asking (``/password/forgot``) answers the same page for every address, and costs the same:
  the request only adds one outbox row (``password_reset_request``, the typed address and the
  client's IP) and commits — the account is not even looked up on the request path. The
  worker (:class:`ResetLinkIssuer`) looks it up, issues the link and queues the mail for a
  known account, and records the request in the activity log either way. The form is rate
  limited per address and per IP (:mod:`idp.security.mail_requests`). A same-origin path to
  return to after signing in (the sign-in page's ``next``) rides along and is kept with the
  link (``return_to``), not in it;
- the link is 256 random bits, stored only as SHA-256 (``one_time_tokens``), expires after
  ``IDP_PASSWORD_RESET_LINK_MINUTES``, is spent by one conditional UPDATE, and is
  superseded by a newer link (earlier ones are deleted when a new one is issued);
- it is bound (``binding``) to a stamp of the account's credentials: the SHA-256 of the
  password hash and of the number of sessions the account ever started. A password change
  changes the first, any successful sign-in (password or SSO) starts a session and changes
  the second, so either makes every outstanding link stale — exactly, without clocks;
- an account with a second factor must give a TOTP code or a recovery code as well (the link
  alone is only "something you have access to");
- the new password obeys the same policy as everywhere (:meth:`PasswordService.check_policy`);
- on success, in one transaction: the new hash, the link spent, the lockout cleared, every
  session ended (which revokes their tokens and sends back-channel logouts), the address
  marked verified (the link proved it), the ``password_reset_done`` mail and the
  ``account:password:reset`` event. The browser is not signed in: it signs in with the new
  password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from flask_babel import lazy_gettext
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.accounts import AccountService
from idp.events import Actor, EventTag, record_event
from idp.mail import messages, queue_mail
from idp.models import OneTimeToken, User, UserSession, utcnow
from idp.models.credentials import RETURN_TO_MAX
from idp.outbox import enqueue, handled_once
from idp.security.devices import hash_key
from idp.security.lockout import ACCOUNT_BUCKET, LockoutService
from idp.security.passwords import PasswordPolicyError, PasswordService
from idp.security.pending_email_changes import cancel_pending
from idp.security.ratelimit import RateLimiter
from idp.security.session_list import SessionListService
from idp.security.two_factor import TwoFactorService, totp_box
from idp.settings import Settings
from idp.store import Store

RESET_PURPOSE = "password_reset"
RESET_REQUEST = "password_reset_request"  # the outbox kind of a request
PASSWORD_RESET = "password_reset"  # the end reason of the sessions a reset signs out


def credential_stamp(db: Session, user_id: str, password_hash: str | None) -> str:
    """What a reset link is bound to: SHA-256 of the password hash, the number of sessions
    the account ever started and when the newest one started. It changes with every password
    change and every successful sign-in; the start time keeps it changed even if old session
    rows were ever purged (the count alone could then come back to an earlier value)."""
    started, newest = db.execute(
        select(func.count(), func.max(UserSession.created_at)).where(UserSession.user_id == user_id)
    ).one()
    newest_text = newest.isoformat() if newest is not None else ""
    material = f"{password_hash or ''}\n{started or 0}\n{newest_text}"
    return hashlib.sha256(material.encode()).hexdigest()


class ResetLinkError(Exception):
    """A reset link that cannot be used (unknown, used, expired, superseded or stale)."""


class ManagedBySso(ResetLinkError):
    """The account's address is in a domain whose organization enforces SSO: its members
    have no password here (a request goes to Entra), so neither does a link mailed before."""

    message = lazy_gettext(
        "Your organization signs you in with SSO: there is no password to reset here. Sign "
        "in with your organization."
    )


class ResetRefused(Exception):
    """The new password (or the code) was refused; ``message`` is for the account's owner.
    Nothing was changed and the link still works."""

    message = lazy_gettext("Your password could not be reset.")

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class MissingPassword(ResetRefused):
    message = lazy_gettext("Type your new password twice.")


class PasswordsDiffer(ResetRefused):
    message = lazy_gettext("The two passwords are not the same. Type the new password twice.")


class PolicyRefused(ResetRefused):
    """The new password breaks the policy; the message says which rule."""


class WrongCode(ResetRefused):
    message = lazy_gettext(
        "That code is not valid. Use a new code from your app or a recovery code."
    )


class SecondFactor(Protocol):
    def is_enabled(self, user: User) -> bool: ...

    def verify_second_factor(self, user: User, code: str) -> str | None: ...


@dataclass(frozen=True)
class ResetLink:
    """A usable link: its row, its account, and whether the account has a second factor."""

    row: OneTimeToken
    user: User
    needs_code: bool


def _never_enforced(email: str) -> bool:
    return False


@dataclass
class ResetCollaborators:
    lockout: LockoutService
    sessions: SessionListService
    second_factor: SecondFactor
    limiter: RateLimiter
    # Whether an address's domain enforces SSO (ConnectionService.enforces_sso).
    sso_enforced: Callable[[str], bool] = _never_enforced


class PasswordResetService:
    def __init__(
        self,
        db: Session,
        accounts: AccountService,
        passwords: PasswordService,
        store: Store,
        settings: Settings,
        collaborators: ResetCollaborators,
        *,
        actor: Actor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.passwords = passwords
        self.store = store
        self.settings = settings
        self.c = collaborators
        self.actor = actor
        self.clock = clock

    # Asking --------------------------------------------------------------------------------
    def request(self, email: str, return_to: str = "") -> None:
        """Queue the request for the worker (:class:`ResetLinkIssuer`); the same statements for
        every address, known or not. ``return_to`` is a same-origin path the caller checked
        (``safe_next``), kept with the link for after the owner signs in. Commits."""
        enqueue(
            self.db,
            RESET_REQUEST,
            {
                "email": email[:320],
                "return_to": return_to if len(return_to) <= RETURN_TO_MAX else "",
                "ip": self.actor.ip if self.actor else "",
                "user_agent": (self.actor.user_agent if self.actor else "")[:200],
            },
        )
        self.db.commit()

    # Using the link ----------------------------------------------------------------------
    def find(self, token: str) -> ResetLink:
        """The usable link, or :class:`ResetLinkError`."""
        if not token or len(token) > 100:
            raise ResetLinkError("unknown")
        row = self.db.scalar(
            select(OneTimeToken).where(
                OneTimeToken.token_hash == hash_key(token),
                OneTimeToken.purpose == RESET_PURPOSE,
            )
        )
        if row is None:
            raise ResetLinkError("unknown")
        user = self.db.get(User, row.user_id)
        if user is None or row.used_at is not None:
            raise ResetLinkError("used")
        if row.expires_at <= self.clock():
            raise ResetLinkError("expired")
        stamp = credential_stamp(self.db, user.id, user.password_hash)
        if row.binding is None or not hmac.compare_digest(row.binding, stamp):
            raise ResetLinkError("stale")  # signed in or changed the password since
        if self.c.sso_enforced(user.email):
            raise ManagedBySso("sso enforced since the link was mailed")
        return ResetLink(row, user, self.c.second_factor.is_enabled(user))

    def reset(self, token: str, new: str, confirmation: str, code: str = "") -> User:
        """Set a new password with the link. Raises :class:`ResetLinkError`,
        :class:`ResetRefused` (a subclass says why) or
        :class:`~idp.security.ratelimit.RateLimited` (second-factor attempts). Commits."""
        link = self.find(token)
        user = link.user
        if not new or not confirmation:
            raise MissingPassword
        if not hmac.compare_digest(new.encode(), confirmation.encode()):
            raise PasswordsDiffer
        try:
            self.passwords.check_policy(new, email=user.email)
        except PasswordPolicyError as exc:
            raise PolicyRefused(str(exc)) from None
        method = "link"
        if link.needs_code:
            # The same bucket as the sign-in's code step: pages do not add up to more guesses.
            self.c.limiter.check(
                self.store.key("rl", "2fa", user.id),
                self.settings.second_factor_attempts_per_minute,
                60,
            )
            spent = self.c.second_factor.verify_second_factor(user, code.strip())
            if spent is None:
                record_event(
                    self.db,
                    EventTag.SECOND_FACTOR_FAILURE,
                    user_id=user.id,
                    organization_id=self.accounts.primary_organization_id(user.id),
                    actor=self.actor,
                    details={"during": "password_reset"},
                )
                self.db.commit()
                raise WrongCode
            method = f"link+{spent}"
        used = self.db.execute(
            update(OneTimeToken)
            .where(
                OneTimeToken.id == link.row.id,
                OneTimeToken.used_at.is_(None),
                OneTimeToken.binding == link.row.binding,
            )
            .values(used_at=self.clock())
            .execution_options(synchronize_session=False)
        )
        if used.rowcount != 1:  # type: ignore[attr-defined]
            self.db.rollback()
            raise ResetLinkError("used")  # a concurrent request used it first
        self._apply(user, new, method)
        return user

    def _apply(self, user: User, new: str, method: str) -> None:
        user.password_hash = self.passwords.hash(new)
        user.email_verified = True  # the link reached this address
        self.db.execute(
            delete(OneTimeToken).where(
                OneTimeToken.user_id == user.id,
                OneTimeToken.purpose == RESET_PURPOSE,
                OneTimeToken.used_at.is_(None),
            )
        )
        self.c.lockout.unlock(user, self.actor or Actor(), by="password reset")
        self.c.lockout.reset(user, ACCOUNT_BUCKET)
        queue_mail(self.db, user.email, messages.password_reset_done(user))
        # "" is no session id: every session of the account ends.
        ended = self.c.sessions.end_others(user.id, "", reason=PASSWORD_RESET, commit=False)
        email_changes_cancelled = cancel_pending(self.db, user.id)
        record_event(
            self.db,
            EventTag.PASSWORD_RESET,
            user_id=user.id,
            organization_id=self.accounts.primary_organization_id(user.id),
            actor=self.actor,
            details={
                "method": method,
                "sessions_ended": ended,
                "email_changes_cancelled": email_changes_cancelled,
            },
        )
        self.db.commit()


class ResetLinkIssuer:
    """Outbox handler of ``password_reset_request``: for a known account, supersede its
    earlier links, issue a new one bound to the credential stamp and queue the mail; for any
    address, record the request in the activity log (with ``user_id`` only when known)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        passwords: PasswordService,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.passwords = passwords
        self.clock = clock

    def __call__(self, payload: dict[str, Any]) -> None:
        actor = Actor(ip=str(payload.get("ip", "")), user_agent=str(payload.get("user_agent", "")))
        with self.session_factory() as db:
            if not handled_once(db, payload):
                return
            self.issue(db, str(payload["email"]), actor, str(payload.get("return_to", "")))

    def issue(self, db: Session, email: str, actor: Actor, return_to: str = "") -> str | None:
        """Issue and mail a link when an account has ``email``; the raw token, or None.
        Commits."""
        accounts = AccountService(db, self.passwords)
        user = accounts.find_user_by_email(email) if len(email) <= 320 else None
        token = None
        if user is not None:
            db.execute(
                delete(OneTimeToken).where(
                    OneTimeToken.user_id == user.id,
                    OneTimeToken.purpose == RESET_PURPOSE,
                    OneTimeToken.used_at.is_(None),
                )
            )
            token = secrets.token_urlsafe(32)
            now = self.clock()
            minutes = self.settings.password_reset_link_minutes
            db.add(
                OneTimeToken(
                    purpose=RESET_PURPOSE,
                    user_id=user.id,
                    token_hash=hash_key(token),
                    binding=credential_stamp(db, user.id, user.password_hash),
                    return_to=return_to if 0 < len(return_to) <= RETURN_TO_MAX else None,
                    created_at=now,
                    expires_at=now + timedelta(minutes=minutes),
                )
            )
            queue_mail(
                db,
                user.email,
                messages.password_reset(
                    user,
                    f"{self.settings.issuer}/password/reset/{token}",
                    minutes,
                    needs_code=TwoFactorService(
                        db, self.passwords, totp_box(self.settings)
                    ).is_enabled(user),
                ),
            )
        record_event(
            db,
            EventTag.PASSWORD_RESET_REQUESTED,
            user_id=user.id if user else None,
            organization_id=accounts.primary_organization_id(user.id) if user else None,
            actor=actor,
        )
        db.commit()
        return token
