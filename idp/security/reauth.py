"""Asking for the password once more before a destructive or sensitive change (OWASP ASVS 4.0
V2.2 / V3.7.1: re-authenticate before deleting an account, an organization, or changing the
email address).

Guesses share the rate-limit bucket of the password change (:func:`reauth_key`): 5 per 5
minutes per account, whichever page asks.
"""

from __future__ import annotations

from idp.models import User
from idp.security.password_change import REAUTH_ATTEMPTS, REAUTH_WINDOW_SECONDS, reauth_key
from idp.security.passwords import PasswordService
from idp.security.ratelimit import RateLimiter
from idp.store import Store


class WrongPassword(Exception):
    """The password given to confirm a change is not the account's."""

    message = "That is not your password."


class PasswordConfirmation:
    """Checks the password typed to confirm a change, rate limited per account."""

    def __init__(self, passwords: PasswordService, limiter: RateLimiter, store: Store) -> None:
        self.passwords = passwords
        self.limiter = limiter
        self.store = store

    def check(self, user: User, password: str) -> None:
        """Raise :class:`WrongPassword` or :class:`~idp.security.ratelimit.RateLimited`.
        An account without a password (SSO only) can never confirm this way."""
        if not password:
            raise WrongPassword
        self.limiter.check(reauth_key(self.store, user.id), REAUTH_ATTEMPTS, REAUTH_WINDOW_SECONDS)
        if not self.passwords.verify(user.password_hash, password).ok:
            raise WrongPassword
