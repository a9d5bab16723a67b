"""Asking for the password once more before a destructive or sensitive change (OWASP ASVS 4.0
V2.2 / V3.7.1: re-authenticate before deleting an account, an organization, or changing the
email address).

Guesses share the rate-limit bucket of the password change (:func:`reauth_key`): 5 per 5
minutes per account, whichever page asks.

An account without a password (it signs in with its organization's Entra ID) confirms by a
recent sign-in instead: its session must have been authenticated within the last
:data:`RECENT_SIGN_IN_SECONDS` (the page offers "Sign in again", which asks Entra for a fresh
sign-in with ``prompt=login``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask_babel import lazy_gettext

from idp.models import User
from idp.security.password_change import REAUTH_ATTEMPTS, REAUTH_WINDOW_SECONDS, reauth_key
from idp.security.passwords import PasswordService
from idp.security.ratelimit import RateLimiter
from idp.store import Store

RECENT_SIGN_IN_SECONDS = 300


class WrongPassword(Exception):
    """The password given to confirm a change is not the account's."""

    message = lazy_gettext("That is not your password.")


class SignInAgain(WrongPassword):
    """An account without a password, signed in too long ago to confirm a change."""

    message = lazy_gettext(
        "To confirm, sign in again with your organization, then repeat this within 5 minutes."
    )


class PasswordConfirmation:
    """Checks the password typed to confirm a change, rate limited per account."""

    def __init__(
        self,
        passwords: PasswordService,
        limiter: RateLimiter,
        store: Store,
        session_auth_time: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.passwords = passwords
        self.limiter = limiter
        self.store = store
        self.session_auth_time = session_auth_time
        self.clock = clock

    def check(self, user: User, password: str) -> None:
        """Raise :class:`WrongPassword` or :class:`~idp.security.ratelimit.RateLimited`.
        An account without a password (SSO only) confirms by a recent sign-in, or raises
        :class:`SignInAgain`."""
        if user.password_hash is None:
            signed_in_at = self.session_auth_time
            if signed_in_at is None or self.clock() - signed_in_at > RECENT_SIGN_IN_SECONDS:
                raise SignInAgain
            return
        if not password:
            raise WrongPassword
        self.limiter.check(reauth_key(self.store, user.id), REAUTH_ATTEMPTS, REAUTH_WINDOW_SECONDS)
        if not self.passwords.verify(user.password_hash, password).ok:
            raise WrongPassword
