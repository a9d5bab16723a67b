"""The TOTP second factor of an account (RFC 6238) and its recovery codes.

Enrolling shows a fresh seed; two-factor authentication is on only once a code from it is
confirmed, which seals the seed (SecretBox, AES-GCM bound to the user id) and records the
code's time step. Verifying a code claims its time step with one conditional UPDATE, and a
recovery code is spent with one conditional UPDATE, so two requests racing with the same code
cannot both succeed (RFC 6238 §5.2: a code is accepted once).

Recovery codes (NIST SP 800-63B §5.1.2 look-up secrets): ten random codes of ten characters
from an alphabet without look-alikes (no 0/o, 1/i/l, ~49 bits each), shown once as
``xxxxx-xxxxx``; each works once, and case, spaces and dashes do not matter when one is typed.
Only SHA-256 of the user id and the code is stored: random codes need no slow hash against
guessing online (sign-in is rate limited), and the user id keeps one computation from testing a
guess against every account's codes at once.

Turning it on, turning it off and making new recovery codes all need the account's password
(or, for an account without one, a fresh sign-in with its organization): someone at a
signed-in browser could otherwise turn it on with their own authenticator and lock the owner
out, since a password reset and an unlock link then ask for the code too. Each of them mails
the owner. The changes that replace rows lock the user's row first, so two of them at once
run one after the other (two "new recovery codes" could otherwise leave twenty working codes).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from flask_babel import lazy_gettext
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from idp.accounts import AccountService
from idp.events import Actor, EventTag, record_event
from idp.mail import messages, queue_mail
from idp.models import RecoveryCode, User, utcnow
from idp.security import totp
from idp.security.passwords import PasswordService
from idp.security.reauth import PasswordConfirmation, SignInAgain
from idp.security.reauth import WrongPassword as NotYourPassword
from idp.security.secretbox import SecretBox, SecretBoxError
from idp.settings import Settings
from idp.store import Store

SEED_PURPOSE = b"idp totp seeds"
PENDING_TTL_SECONDS = 600

RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_LENGTH = 10
RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
_RECOVERY_SEPARATORS = re.compile(r"[\s\-]+")
_RECOVERY_CODE = re.compile(f"[{RECOVERY_ALPHABET}]{{{RECOVERY_CODE_LENGTH}}}")

SecondFactorMethod = Literal["otp", "recovery"]
Notification = Literal["two_factor_enabled", "two_factor_disabled", "recovery_codes_regenerated"]


# Errors --------------------------------------------------------------------------------------
class TwoFactorError(Exception):
    """A two-factor change that cannot be made; ``message`` is for the account's owner."""

    message = lazy_gettext("This change could not be made.")

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class WrongPassword(TwoFactorError):
    message = lazy_gettext("That is not your current password.")


class InvalidCode(TwoFactorError):
    message = lazy_gettext(
        "That code is not right. Enter the 6-digit code your authenticator app shows now."
    )


class AlreadyEnabled(TwoFactorError):
    message = lazy_gettext("Two-factor authentication is already on.")


class NotEnabled(TwoFactorError):
    message = lazy_gettext("Two-factor authentication is off.")


# Recovery codes (pure) -----------------------------------------------------------------------
def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` distinct codes shaped ``xxxxx-xxxxx``."""
    codes: list[str] = []
    while len(codes) < count:
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        code = f"{raw[:5]}-{raw[5:]}"
        if code not in codes:
            codes.append(code)
    return codes


def normalize_recovery_code(text: str) -> str | None:
    """The ten characters of a recovery code as typed (any case, spaces, dashes), or None."""
    if len(text) > 64:
        return None
    raw = _RECOVERY_SEPARATORS.sub("", text).lower()
    return raw if _RECOVERY_CODE.fullmatch(raw) else None


def hash_recovery_code(user_id: str, code: str) -> str:
    """SHA-256 (hex) of ``user_id`` and the code's canonical form; the only thing stored."""
    raw = normalize_recovery_code(code)
    if raw is None:
        raise ValueError("not a recovery code")
    return hashlib.sha256(f"idp recovery code|{user_id}|{raw}".encode()).hexdigest()


# Enrollment ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Enrollment:
    """What the enrollment page shows: the seed, its otpauth URI and that URI as a QR code."""

    secret: str
    uri: str
    qr_svg: str

    @property
    def grouped_secret(self) -> str:
        return totp.group(self.secret)

    @property
    def qr_data_uri(self) -> str:
        return totp.qr_data_uri(self.uri)


def totp_box(settings: Settings) -> SecretBox:
    """The SecretBox that seals TOTP seeds (its own HKDF purpose, bound to the user id)."""
    return SecretBox(settings.secret_key, SEED_PURPOSE)


class PendingEnrollments:
    """Seeds shown on the enrollment page and not yet confirmed, kept in the store under the
    browser session for ten minutes, sealed (bound to session and user), never in the page's
    form. Losing one only means starting the enrollment again."""

    def __init__(self, store: Store, box: SecretBox, ttl_seconds: int = PENDING_TTL_SECONDS):
        self.store = store
        self.box = box
        self.ttl = ttl_seconds

    @staticmethod
    def _associated(session_id: str, user_id: str) -> str:
        return f"pending-enrollment:{session_id}:{user_id}"

    def put(self, session_id: str, user_id: str, secret: str) -> None:
        sealed = self.box.seal(self._associated(session_id, user_id), secret.encode("ascii"))
        self.store.client.set(self.store.two_factor_enrollment_key(session_id), sealed, ex=self.ttl)

    def get(self, session_id: str, user_id: str) -> str | None:
        raw: Any = self.store.client.get(self.store.two_factor_enrollment_key(session_id))
        if raw is None:
            return None
        try:
            secret = self.box.open(self._associated(session_id, user_id), raw.decode()).decode()
        except (SecretBoxError, UnicodeDecodeError):
            return None
        return secret if totp.is_secret(secret) else None

    def discard(self, session_id: str) -> None:
        self.store.client.delete(self.store.two_factor_enrollment_key(session_id))


# The service ---------------------------------------------------------------------------------
class TwoFactorService:
    """Enrollment, verification and the password-protected changes of the TOTP second
    factor. Every method that changes something commits; events and mails join that
    transaction."""

    def __init__(
        self,
        db: Session,
        passwords: PasswordService,
        box: SecretBox,
        clock: Callable[[], datetime] = utcnow,
        *,
        actor: Actor | None = None,
        issuer_name: str = totp.DEFAULT_ISSUER,
        confirmation: PasswordConfirmation | None = None,
    ) -> None:
        """``confirmation`` checks the password for the changes that need it; without one
        (reading and verifying codes only) those changes refuse."""
        self.db = db
        self.passwords = passwords
        self.box = box
        self.clock = clock
        self.actor = actor
        self.issuer_name = issuer_name
        self.confirmation = confirmation

    # Reading -----------------------------------------------------------------------------
    def is_enabled(self, user: User) -> bool:
        return user.totp_enabled_at is not None and user.totp_secret is not None

    def recovery_codes_left(self, user: User) -> int:
        return (
            self.db.scalar(
                select(func.count())
                .select_from(RecoveryCode)
                .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
            )
            or 0
        )

    # Enrollment --------------------------------------------------------------------------
    def start_enrollment(self, user: User, password: str) -> Enrollment:
        """A fresh seed to show, once the password is confirmed. Nothing is stored: the caller
        keeps the seed until :meth:`confirm_enrollment`, so an abandoned enrollment changes
        nothing. Raises RateLimited past the shared re-authentication limit."""
        if self.is_enabled(user):
            raise AlreadyEnabled
        self._check_password(user, password)
        return self.enrollment(user, totp.new_secret())

    def enrollment(self, user: User, secret: str) -> Enrollment:
        """The page contents for a seed already shown (e.g. the page is displayed again)."""
        uri = totp.provisioning_uri(secret, user.email, self.issuer_name)
        return Enrollment(secret=secret, uri=uri, qr_svg=totp.qr_svg(uri))

    def confirm_enrollment(self, user: User, secret: str, code: str) -> list[str]:
        """Turn two-factor authentication on with ``secret`` if ``code`` is one of its current
        codes; returns the new recovery codes (shown once, never stored in clear)."""
        if self.is_enabled(user):
            raise AlreadyEnabled
        now = self.clock()
        step = totp.verify(secret, code, None, now) if totp.is_secret(secret) else None
        if step is None:
            raise InvalidCode
        sealed = self.box.seal(user.id, secret.encode("ascii"))
        # Conditional, so a second tab confirming another seed cannot replace this one.
        turned_on = self.db.execute(
            update(User)
            .where(User.id == user.id, User.totp_enabled_at.is_(None))
            .values(totp_secret=sealed, totp_enabled_at=now, totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
        if turned_on.rowcount != 1:  # type: ignore[attr-defined]
            self.db.rollback()
            raise AlreadyEnabled
        codes = self._replace_recovery_codes(user, now)
        self._record(EventTag.TWO_FACTOR_ENABLED, user, {"method": "totp"})
        self._notify(user, "two_factor_enabled")
        self.db.commit()
        _set_loaded(user, totp_secret=sealed, totp_enabled_at=now, totp_last_step=step)
        return codes

    # Verification ------------------------------------------------------------------------
    def verify_second_factor(self, user: User, code: str) -> SecondFactorMethod | None:
        """``"otp"`` for a fresh TOTP code, ``"recovery"`` for an unused recovery code, else
        None. A matching code is spent with one conditional UPDATE and committed, so of two
        requests racing with one code exactly one gets a method back."""
        if not self.is_enabled(user) or len(code) > 64:
            return None
        if totp.normalize_code(code) is not None:
            return "otp" if self._spend_totp(user, code) else None
        if normalize_recovery_code(code) is not None and self._spend_recovery_code(user, code):
            return "recovery"
        return None

    def _spend_totp(self, user: User, code: str) -> bool:
        step = totp.verify(self._seed(user), code, user.totp_last_step, self.clock())
        if step is None:
            return False
        claimed = self.db.execute(
            update(User)
            .where(
                User.id == user.id,
                User.totp_enabled_at.is_not(None),
                or_(User.totp_last_step.is_(None), User.totp_last_step < step),
            )
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
        self.db.commit()
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False  # a concurrent request used this code (or a later one) first
        _set_loaded(user, totp_last_step=step)
        return True

    def _spend_recovery_code(self, user: User, code: str) -> bool:
        spent = self.db.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hash == hash_recovery_code(user.id, code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=self.clock())
            .execution_options(synchronize_session=False)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            self.db.commit()
            return False
        self._record(
            EventTag.RECOVERY_CODE_USED, user, {"remaining": self.recovery_codes_left(user)}
        )
        self.db.commit()
        return True

    def _seed(self, user: User) -> str:
        assert user.totp_secret is not None
        # SecretBoxError (another IDP_SECRET_KEY) propagates: an operator must fix it.
        return self.box.open(user.id, user.totp_secret).decode("ascii")

    # Changes that need the password ------------------------------------------------------
    def disable(self, user: User, password: str) -> None:
        """Turn two-factor authentication off (seed and recovery codes deleted)."""
        if not self.is_enabled(user):
            raise NotEnabled
        self._check_password(user, password)
        self._turn_off(user, {})

    def reset(self, user: User) -> None:
        """Turn it off for an owner who lost both their authenticator and their recovery codes
        (``idp user reset-2fa``): no password is asked, the operator has checked who asks.
        Recorded and mailed like any turning off, so an owner who did not ask hears of it."""
        if not self.is_enabled(user):
            raise NotEnabled
        self._turn_off(user, {"reason": "operator"})

    def _turn_off(self, user: User, details: dict[str, Any]) -> None:
        self._lock_user_row(user)
        self.db.execute(
            update(User)
            .where(User.id == user.id)
            .values(totp_secret=None, totp_enabled_at=None, totp_last_step=None)
            .execution_options(synchronize_session=False)
        )
        self.db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        self._record(EventTag.TWO_FACTOR_DISABLED, user, details or None)
        self._notify(user, "two_factor_disabled")
        self.db.commit()
        _set_loaded(user, totp_secret=None, totp_enabled_at=None, totp_last_step=None)

    def regenerate_recovery_codes(self, user: User, password: str) -> list[str]:
        """New recovery codes; every earlier one stops working."""
        if not self.is_enabled(user):
            raise NotEnabled
        self._check_password(user, password)
        self._lock_user_row(user)
        if self.db.scalar(select(User.totp_enabled_at).where(User.id == user.id)) is None:
            self.db.rollback()
            raise NotEnabled  # turned off meanwhile
        codes = self._replace_recovery_codes(user, self.clock())
        self._record(EventTag.RECOVERY_CODES_REGENERATED, user, {"count": len(codes)})
        self._notify(user, "recovery_codes_regenerated")
        self.db.commit()
        return codes

    def _check_password(self, user: User, password: str) -> None:
        """The password (or an SSO-only account's fresh sign-in), rate limited per account
        with every other re-authentication; RateLimited propagates."""
        if self.confirmation is None:
            raise TwoFactorError()
        try:
            self.confirmation.check(user, password)
        except SignInAgain as exc:
            raise TwoFactorError(exc.message) from None
        except NotYourPassword:
            raise WrongPassword from None

    def _lock_user_row(self, user: User) -> None:
        """Serialize the changes of one account's second factor (SELECT ... FOR UPDATE on
        PostgreSQL; SQLite has one writer at a time anyway)."""
        self.db.execute(select(User.id).where(User.id == user.id).with_for_update())

    def _replace_recovery_codes(self, user: User, now: datetime) -> list[str]:
        self.db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        codes = new_recovery_codes()
        self.db.add_all(
            RecoveryCode(user_id=user.id, code_hash=hash_recovery_code(user.id, c), created_at=now)
            for c in codes
        )
        return codes

    # Side effects ------------------------------------------------------------------------
    def _record(self, tag: EventTag, user: User, details: dict[str, Any] | None = None) -> None:
        record_event(
            self.db,
            tag,
            user_id=user.id,
            organization_id=AccountService(self.db, self.passwords).primary_organization_id(
                user.id
            ),
            actor=self.actor,
            details=details,
        )

    def _notify(self, user: User, notification: Notification) -> None:
        """Queue the security mail about ``notification`` in this transaction, so it is sent
        exactly when the change commits."""
        if notification == "two_factor_enabled":
            message = messages.two_factor_enabled(user)
        elif notification == "two_factor_disabled":
            message = messages.two_factor_disabled(user)
        else:
            message = messages.recovery_codes_regenerated(user)
        queue_mail(self.db, user.email, message)


def _set_loaded(user: User, **values: Any) -> None:
    """Show committed column values on ``user`` without marking it changed (a later flush
    must never write an older ``totp_last_step`` back over a newer one)."""
    for name, value in values.items():
        set_committed_value(user, name, value)
