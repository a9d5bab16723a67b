"""Limits on forms that mail an address someone types: password reset, sign-up and "send the
link again" (OWASP Forgot Password Cheat Sheet: protect the form against flooding a mailbox;
warehouse's repeat windows on account mails).

Two fixed-window limits, counted before anything is looked up so that they answer the same for
known and unknown addresses: one per address, shared by all these forms (three forms must not
add up to three times the mail), and one per client IP address.
"""

from __future__ import annotations

import hashlib

from idp.accounts import normalize_email
from idp.security.ratelimit import RateLimiter
from idp.settings import Settings
from idp.store import Store

HOUR = 3600


class MailRequestLimits:
    def __init__(self, limiter: RateLimiter, store: Store, settings: Settings) -> None:
        self.limiter = limiter
        self.store = store
        self.settings = settings

    def check(self, ip: str, address: str) -> None:
        """Count one request; raise :class:`~idp.security.ratelimit.RateLimited` past a limit.
        The address is keyed by its SHA-256, so the store never holds it."""
        digest = hashlib.sha256(normalize_email(address).encode()).hexdigest()
        self.limiter.check(
            self.store.key("rl", "mail", "ip", ip),
            self.settings.email_requests_per_ip_per_hour,
            HOUR,
        )
        self.limiter.check(
            self.store.key("rl", "mail", "address", digest),
            self.settings.email_requests_per_address_per_hour,
            HOUR,
        )
