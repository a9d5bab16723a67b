"""Password hashing (argon2id, RFC 9106) and the password policy (NIST SP 800-63B §5.1.1.2).

Parameters default to the OWASP Password Storage Cheat Sheet's (m=19456 KiB, t=2, p=1) and are
settings; a hash made with other parameters is reported as needing a re-hash after a successful
verification. Verifying for an unknown account runs the same hash against a dummy, so the time
taken does not tell whether an account exists.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask_babel import gettext

from idp.settings import Settings


class PasswordPolicyError(ValueError):
    """The new password breaks the policy; the message is safe to show to its author."""


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (lower-case), see idp/security/data/NOTICE."""
    data = resources.files("idp.security").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode().split())


_TRAILING_DECORATION = re.compile(r"[\d\W_]+$")


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    needs_rehash: bool = False


class PasswordService:
    def __init__(self, settings: Settings) -> None:
        self.min_length = settings.password_min_length
        self.max_length = settings.password_max_length
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._dummy_hash = self.hasher.hash("idp dummy password for unknown accounts")

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> VerifyResult:
        """Check ``password``; with no stored hash, spend the same time and fail."""
        if len(password) > self.max_length:
            return VerifyResult(ok=False)  # never hash unbounded input
        try:
            self.hasher.verify(stored_hash or self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return VerifyResult(ok=False)
        if stored_hash is None:
            return VerifyResult(ok=False)
        return VerifyResult(ok=True, needs_rehash=self.hasher.check_needs_rehash(stored_hash))

    def check_policy(self, password: str, *, email: str = "") -> None:
        """Raise :class:`PasswordPolicyError` with the reason when ``password`` is refused."""
        if len(password) < self.min_length:
            raise PasswordPolicyError(
                gettext("Use at least %(min_length)s characters.", min_length=self.min_length)
            )
        if len(password) > self.max_length:
            raise PasswordPolicyError(
                gettext("Use at most %(max_length)s characters.", max_length=self.max_length)
            )
        lowered = password.lower()
        common = common_passwords()
        stripped = _TRAILING_DECORATION.sub("", lowered)
        if lowered in common or stripped in common or len(set(lowered)) < 4:
            raise PasswordPolicyError(gettext("This password is too common. Choose another one."))
        local_part = email.split("@", 1)[0].lower()
        if len(local_part) >= 4 and local_part in lowered:
            raise PasswordPolicyError(gettext("The password must not contain your email address."))
