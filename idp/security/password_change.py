"""Changing one's own password while signed in.

Follows OWASP ASVS 4.0 V2.1.6 (the change needs the current and the new password), V3.3.3
(offer to end every other session after a password change, effective for relying parties
too) and the password policy of NIST SP 800-63B §5.1.1.2, the same as everywhere
(:meth:`PasswordService.check_policy`):

- the current password is required, and guessing it is rate limited (5 tries per 5 minutes per
  account, one bucket with the other pages that ask for the password again);
- the new password is typed twice and must differ from the current one;
- on success, in one transaction: the new hash, an ``account:password:change`` event, the
  ``password_changed`` mail, and — when the user asks, the default — the end of every other
  session of the account, which revokes their tokens and tells their relying services.

Nothing is changed on any refusal. The session making the change stays signed in, under a
new cookie token: a copy of the old cookie stops working.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask_babel import lazy_gettext
from sqlalchemy.orm import Session

from idp.accounts import AccountService
from idp.events import Actor, EventTag, record_event
from idp.mail import messages, queue_mail
from idp.models import User
from idp.security.passwords import PasswordPolicyError, PasswordService
from idp.security.pending_email_changes import cancel_pending
from idp.security.ratelimit import RateLimiter
from idp.security.session_list import SessionListService
from idp.store import Store

PASSWORD_CHANGED = "password_changed"  # the end reason of the sessions it signs out
REAUTH_ATTEMPTS = 5
REAUTH_WINDOW_SECONDS = 300


class PasswordChangeError(Exception):
    """The change was refused; ``message`` is for the account's owner."""

    message = lazy_gettext("Your password could not be changed.")

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class MissingField(PasswordChangeError):
    message = lazy_gettext("Enter your current password and your new password twice.")


class NewPasswordsDiffer(PasswordChangeError):
    message = lazy_gettext("The two new passwords are not the same. Type the new password twice.")


class PolicyRefused(PasswordChangeError):
    """The new password breaks the policy; the message says which rule."""


class WrongCurrentPassword(PasswordChangeError):
    message = lazy_gettext("That is not your current password.")


class SameAsCurrent(PasswordChangeError):
    message = lazy_gettext("The new password is your current password. Choose a different one.")


@dataclass(frozen=True)
class PasswordChanged:
    other_sessions_ended: int
    session_token: str | None  # the session's new cookie token (the old one no longer works)


def reauth_key(store: Store, user_id: str) -> str:
    """The rate-limit bucket of password re-entry for one account (shared by every page that
    asks for the current password, so pages do not add up to more guesses)."""
    return store.key("rl", "reauth", user_id)


class PasswordChangeService:
    def __init__(
        self,
        db: Session,
        passwords: PasswordService,
        sessions: SessionListService,
        limiter: RateLimiter,
        store: Store,
        accounts: AccountService,
        *,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.sessions = sessions
        self.limiter = limiter
        self.store = store
        self.accounts = accounts
        self.actor = actor

    def change(
        self,
        user: User,
        current_session_id: str,
        current: str,
        new: str,
        confirmation: str,
        *,
        sign_out_others: bool,
    ) -> PasswordChanged:
        """Set ``new`` as the password of ``user``. Raises :class:`PasswordChangeError` (a
        subclass says why) or :class:`~idp.security.ratelimit.RateLimited`. Commits."""
        if not current or not new or not confirmation:
            raise MissingField
        if not hmac.compare_digest(new.encode(), confirmation.encode()):
            raise NewPasswordsDiffer
        try:
            self.passwords.check_policy(new, email=user.email)
        except PasswordPolicyError as exc:
            raise PolicyRefused(str(exc)) from None
        # Counted only once the form is otherwise right: only guesses at the current
        # password use up attempts, and the count is one atomic increment.
        self.limiter.check(reauth_key(self.store, user.id), REAUTH_ATTEMPTS, REAUTH_WINDOW_SECONDS)
        if not self.passwords.verify(user.password_hash, current).ok:
            raise WrongCurrentPassword
        if hmac.compare_digest(new.encode(), current.encode()):
            raise SameAsCurrent

        user.password_hash = self.passwords.hash(new)
        # The mail first: should it be refused, nothing has touched the other sessions yet.
        queue_mail(self.db, user.email, messages.password_changed(user))
        email_changes_cancelled = cancel_pending(self.db, user.id)
        ended = 0
        if sign_out_others:
            ended = self.sessions.end_others(
                user.id, current_session_id, reason=PASSWORD_CHANGED, commit=False
            )
        record_event(
            self.db,
            EventTag.PASSWORD_CHANGED,
            user_id=user.id,
            organization_id=self.accounts.primary_organization_id(user.id),
            actor=self.actor,
            session_id=current_session_id,
            details={
                "signed_out_other_sessions": sign_out_others,
                "sessions_ended": ended,
                "email_changes_cancelled": email_changes_cancelled,
            },
        )
        # The next request under the new token finds the session in the database.
        token = self.sessions.sessions.renew(current_session_id)
        self.db.commit()
        return PasswordChanged(other_sessions_ended=ended, session_token=token)
