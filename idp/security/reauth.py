"""Asking for the password once more before a destructive or sensitive change (OWASP ASVS 4.0
V2.2 / V3.7.1: re-authenticate before deleting an account, an organization, or changing the
email address).

Guesses share the rate-limit bucket of the password change (:func:`reauth_key`): 5 per 5
minutes per account, whichever page asks.

An account without a password (it signs in with its organization's Entra ID) confirms by a
fresh sign-in instead: its session must have been started, within the last
:data:`RECENT_SIGN_IN_SECONDS`, by a sign-in at Entra that idp itself asked to be fresh (the
page offers "Sign in again", which sends ``prompt=login``, OIDC Core §3.1.2.1) and whose ID
token's ``auth_time`` is not older than that request. Any other sign-in does not count: Entra
may complete it silently from its own session (also when the browser drops ``prompt=login``),
so someone at a signed-in browser could otherwise confirm a deletion without any credential.
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
        fresh_sign_in_at: Callable[[], float | None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``fresh_sign_in_at``: when this request's session was started by a fresh sign-in
        at the organization's Entra ID, if it was (read only when needed)."""
        self.passwords = passwords
        self.limiter = limiter
        self.store = store
        self.fresh_sign_in_at = fresh_sign_in_at
        self.clock = clock

    def check(self, user: User, password: str) -> None:
        """Raise :class:`WrongPassword` or :class:`~idp.security.ratelimit.RateLimited`.
        An account without a password (SSO only) confirms by a recent fresh sign-in, or raises
        :class:`SignInAgain`."""
        if user.password_hash is None:
            signed_in_at = self.fresh_sign_in_at()
            if signed_in_at is None or self.clock() - signed_in_at > RECENT_SIGN_IN_SECONDS:
                raise SignInAgain
            return
        if not password:
            raise WrongPassword
        self.limiter.check(reauth_key(self.store, user.id), REAUTH_ATTEMPTS, REAUTH_WINDOW_SECONDS)
        if not self.passwords.verify(user.password_hash, password).ok:
            raise WrongPassword
