"""Sign-in: password, lockout, rate limits, then the second factor when the user has one.

One generic failure for every reason (unknown account, wrong password, locked account, rate
limit), and the same cost for an unknown account as for a known one (OWASP Authentication
Cheat Sheet). The order of checks matters:

1. per-IP and global rate limits (credential stuffing across accounts);
2. a locked account refuses without verifying anything, unless the attempt comes from a
   device the owner has signed in from before (it has its own bucket);
3. the attempt takes a numbered slot in its bucket; only slots up to the threshold may verify
   a password; in the account's bucket a failure in the last slot (or, refused unverified,
   past it, when the account is not locked yet) locks the account and mails an unlock link;
4. an account whose email address is not verified yet (sign-up) starts no session, and the
   right password gets the same answer as a wrong one: anyone can sign up with any address
   and a password of their choosing, so an answer of its own would tell them whether the
   address had an account before. Its mailbox gets a new verification link instead;
5. with a second factor, a pending sign-in is kept server-side for a few minutes and the
   session starts only after a valid code. The attempt count is reset only when the whole
   sign-in succeeded: a wrong code counts as a failed attempt in the password's bucket (the one
   that reaches the threshold locks the account and mails the unlock link, and the owner's
   failed-sign-in alert is sent), so knowing the password does not give unlimited guesses of
   the code (NIST SP 800-63B §5.2.2 limits failed attempts per authenticator). A pending
   sign-in of an account locked meanwhile cannot be completed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from flask_babel import lazy_gettext
from sqlalchemy.orm import Session

from idp.accounts import AccountService
from idp.events import ACCOUNT, Actor, Application, EventTag, record_event
from idp.models import Device, User, UserSession
from idp.security.device_trust import DeviceTrust
from idp.security.devices import ClientInfo
from idp.security.lockout import ACCOUNT_BUCKET, LockoutService, Slot
from idp.security.passwords import PasswordService
from idp.security.ratelimit import RateLimiter
from idp.security.sessions import SessionService, StartedSession
from idp.settings import Settings
from idp.store import Store

GENERIC_FAILURE = lazy_gettext("Incorrect email or password.")
PENDING_SECONDS = 300
UNVERIFIED_SECONDS = 900


class InvalidCredentials(Exception):
    """Sign-in refused. The reason is logged in the activity log, never shown."""


class InvalidSecondFactor(Exception):
    """The code was wrong, already used, or the pending sign-in has expired. ``ended``: the
    pending sign-in is over (expired, or ended by the attempt count or a lock); the browser
    has to start again with the password."""

    def __init__(self, reason: str, *, ended: bool = False) -> None:
        super().__init__(reason)
        self.ended = ended


class SignInObserver(Protocol):
    """Told about sign-ins inside their transaction (login alerts)."""

    def on_sign_in_success(
        self,
        user: User,
        device: Device,
        new_device: bool,
        ip: str,
        application: str,
        *,
        via_sso: bool = False,
    ) -> None: ...

    def on_sign_in_failure(self, user: User, ip: str) -> Callable[[], None] | None:
        """What to undo outside the database (the store) should the transaction not
        commit, if anything."""
        ...


class SecondFactor(Protocol):
    def is_enabled(self, user: User) -> bool: ...

    def verify_second_factor(self, user: User, code: str) -> str | None: ...


class Mailer(Protocol):
    def account_locked(self, db: Session, user: User, unlock_token: str) -> None: ...


class VerificationMailer(Protocol):
    def resend_verification(self, user: User, ip: str, return_to: str) -> None:
        """Queue a new verification link for ``user`` in the caller's transaction, unless the
        mailed-link limits say no."""
        ...


@dataclass(frozen=True)
class SignInResult:
    started: StartedSession
    user_id: str
    device_trust_token: str


@dataclass(frozen=True)
class SecondFactorRequired:
    pending_token: str


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in waiting for its code: whose, the attempt bucket its password counted in, and
    the count at which a wrong code ends it (and, in the account's bucket, locks the account):
    the threshold, or the next attempt when the password itself came in the last slot."""

    user: User
    bucket: str
    ends_at: int


@dataclass
class SignInCollaborators:
    lockout: LockoutService
    limiter: RateLimiter
    trust: DeviceTrust
    observer: SignInObserver
    second_factor: SecondFactor
    mailer: Mailer
    verification: VerificationMailer


class AuthenticationService:
    def __init__(
        self,
        db: Session,
        accounts: AccountService,
        passwords: PasswordService,
        sessions: SessionService,
        store: Store,
        settings: Settings,
        collaborators: SignInCollaborators,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.passwords = passwords
        self.sessions = sessions
        self.store = store
        self.settings = settings
        self.c = collaborators

    # Password step -------------------------------------------------------------------------
    def _rate_limit(self, ip: str) -> None:
        self.c.limiter.check_all(
            [
                (
                    self.store.key("rl", "login", "ip", ip),
                    self.settings.login_attempts_per_ip_per_minute,
                    60,
                ),
                (
                    self.store.key("rl", "login", "global"),
                    self.settings.login_attempts_global_per_minute,
                    60,
                ),
            ]
        )

    def _fail(
        self, user: User | None, client: ClientInfo, reason: str, *, alert: bool = True
    ) -> InvalidCredentials:
        details = {"reason": reason, "user_agent": client.user_agent[:200]}
        self._record_failure(EventTag.LOGIN_FAILURE, user, client, details, alert=alert)
        return InvalidCredentials(reason)

    def _record_failure(
        self,
        tag: EventTag,
        user: User | None,
        client: ClientInfo,
        details: dict[str, str],
        *,
        alert: bool = True,
    ) -> None:
        """Record a refused attempt and queue the owner's failed-sign-in alert, in one
        transaction (the alert's window is closed again if it does not commit)."""
        record_event(
            self.db,
            tag,
            user_id=user.id if user else None,
            organization_id=self.accounts.primary_organization_of(user) if user else None,
            actor=Actor(ip=client.ip, user_agent=client.user_agent),
            details=details,
        )
        undo = (
            self.c.observer.on_sign_in_failure(user, client.ip)
            if user is not None and alert
            else None
        )
        try:
            self.db.commit()
        except Exception:
            if undo is not None:
                undo()
            raise

    def _refuse_locked(self, user: User, client: ClientInfo, password: str) -> InvalidCredentials:
        """A locked account (or an exhausted attempt count) is refused without checking the
        password, yet after a verification of the same cost: answering sooner than for an
        unknown address would tell that the address has an account."""
        self.passwords.verify(None, password)
        return self._fail(user, client, "locked")

    def sign_in(
        self,
        email: str,
        password: str,
        client: ClientInfo,
        trust_token: str | None = None,
        *,
        return_to: str = "",
        application: Application = ACCOUNT,
    ) -> SignInResult | SecondFactorRequired:
        """Check the password; raise InvalidCredentials, or RateLimited past a limit.
        ``return_to``: a same-origin path (checked by the caller) a new verification link
        leads back to, should the address need one. ``application``: what the sign-in continues to
        (its event is that product's, its login alert names it)."""
        self._rate_limit(client.ip)
        user = self.accounts.find_user_by_email(email) if len(email) <= 320 else None
        if user is None:
            self.passwords.verify(None, password)  # same cost as a real verification
            raise self._fail(None, client, "unknown_account")
        trusted_device = self.c.trust.trusted_device(trust_token, user.id, user.password_hash)
        bucket = f"device:{trusted_device}" if trusted_device else ACCOUNT_BUCKET
        if user.locked_at is not None and trusted_device is None:
            raise self._refuse_locked(user, client, password)
        slot = self.c.lockout.take_slot(user, bucket)
        if not slot.may_verify:
            if bucket == ACCOUNT_BUCKET:  # past the threshold and not locked yet: see _lock
                self._lock(user, client)
            raise self._refuse_locked(user, client, password)
        result = self.passwords.verify(user.password_hash, password)
        if not result.ok:
            if slot.is_last and bucket == ACCOUNT_BUCKET:
                self._lock(user, client)
            raise self._fail(user, client, "bad_password")
        if result.needs_rehash:
            user.password_hash = self.passwords.hash(password)
        if user.email_verified and self.c.second_factor.is_enabled(user):
            # The count stays until the code is right too: wrong codes add to it.
            return SecondFactorRequired(self._pending(user, slot))
        self.c.lockout.reset(user, bucket)
        if not user.email_verified:
            raise self._unverified(user, client, return_to)
        return self._complete(user, client, amr="pwd", application=application)

    # Unverified address ------------------------------------------------------------------
    def _unverified(self, user: User, client: ClientInfo, return_to: str) -> InvalidCredentials:
        """The right password for an address not verified yet: refused like a wrong one, with
        a new verification link queued for the mailbox (no login alert: the owner did nothing
        wrong)."""
        self.c.verification.resend_verification(user, client.ip, return_to)
        return self._fail(user, client, "email_unverified", alert=False)

    # Second factor -------------------------------------------------------------------------
    def _pending_key(self, token: str) -> str:
        return self.store.key("pending-2fa", hashlib.sha256(token.encode()).hexdigest())

    def _pending(self, user: User, slot: Slot) -> str:
        self.db.commit()  # a re-hashed password is kept even if the code never comes
        token = secrets.token_urlsafe(32)
        record = {
            "user_id": user.id,
            "bucket": slot.bucket,
            "ends_at": max(slot.threshold, slot.number + 1),
        }
        self.store.client.set(self._pending_key(token), json.dumps(record), ex=PENDING_SECONDS)
        return token

    def _pending_sign_in(self, token: str | None) -> PendingSignIn | None:
        if not token or len(token) > 100:
            return None
        raw = self.store.client.get(self._pending_key(token))
        if raw is None:
            return None
        record = json.loads(raw)
        user = self.db.get(User, record["user_id"])
        if user is None:
            return None
        return PendingSignIn(user, str(record["bucket"]), int(record["ends_at"]))

    def pending_user(self, token: str | None) -> User | None:
        pending = self._pending_sign_in(token)
        return pending.user if pending is not None else None

    def complete_second_factor(
        self, token: str | None, code: str, client: ClientInfo, application: Application = ACCOUNT
    ) -> SignInResult:
        pending = self._pending_sign_in(token)
        if pending is None or token is None:
            raise InvalidSecondFactor("expired", ended=True)
        user = pending.user
        self.c.limiter.check(
            self.store.key("rl", "2fa", user.id),
            self.settings.second_factor_attempts_per_minute,
            60,
        )
        if user.locked_at is not None and pending.bucket == ACCOUNT_BUCKET:
            self.store.client.delete(self._pending_key(token))
            raise self._wrong_code(user, client, "locked", ended=True)
        method = self.c.second_factor.verify_second_factor(user, code.strip())
        if method is None:
            raise self._count_wrong_code(pending, token, client)
        if not self.store.client.delete(self._pending_key(token)):
            raise InvalidSecondFactor("expired", ended=True)  # a concurrent request completed it
        self.c.lockout.reset(user, pending.bucket)
        return self._complete(user, client, amr="pwd otp mfa", application=application)

    def _count_wrong_code(
        self, pending: PendingSignIn, token: str, client: ClientInfo
    ) -> InvalidSecondFactor:
        """A wrong code takes the next attempt in the password's bucket. The attempt at or past
        ``ends_at`` ends the pending sign-in: in the account's bucket it locks the account
        and mails the unlock link (unless it is locked already: see :meth:`_lock`); in a
        trusted device's, the device's attempts are used up."""
        user = pending.user
        failures = self.c.lockout.take_slot(user, pending.bucket).number
        ended = failures >= pending.ends_at
        if ended:
            self.store.client.delete(self._pending_key(token))
        if ended and pending.bucket == ACCOUNT_BUCKET:
            self._lock(user, client)
        return self._wrong_code(user, client, "wrong_code", ended=ended)

    def _lock(self, user: User, client: ClientInfo) -> None:
        """Lock the account and mail the unlock link, unless it is locked already.

        A failed attempt in the account's bucket at or past the threshold locks it, not only
        the one in the threshold's own slot: a right password in the last slot lets its code
        come one attempt later (:class:`PendingSignIn`), and the attempt there may be another
        sign-in's, which is past its own end. Locking only in exact slots would let someone
        with the password interleave two pending sign-ins so that no attempt ever lands on
        one, and guess codes again every window without the account ever locking
        (NIST SP 800-63B §5.2.2)."""
        token = self.c.lockout.lock(user, Actor(ip=client.ip, user_agent=client.user_agent))
        if token is not None:
            self.c.mailer.account_locked(self.db, user, token)

    def _wrong_code(
        self, user: User, client: ClientInfo, reason: str, *, ended: bool
    ) -> InvalidSecondFactor:
        """The refused code, recorded with the owner's failed-sign-in alert: their password was
        right, so someone else may have it."""
        self._record_failure(EventTag.SECOND_FACTOR_FAILURE, user, client, {"reason": reason})
        return InvalidSecondFactor(reason, ended=ended)

    # Completion ----------------------------------------------------------------------------
    def complete_federated(
        self,
        user: User,
        client: ClientInfo,
        details: dict[str, str],
        application: Application = ACCOUNT,
        *,
        auth_time: float | None = None,
    ) -> SignInResult:
        """Start a session for a sign-in the user's organization (Entra ID) vouched for.
        No lockout and no second factor here: the identity provider enforced its own.
        ``auth_time``: when Entra authenticated the user (its ID token says, else now): the
        session's ``auth_time`` (OIDC Core §2), so a sign-in Entra completed from its own
        older session does not answer a relying service's prompt=login or max_age."""
        return self._complete(
            user,
            client,
            amr="fed",
            tag=EventTag.LOGIN_SSO,
            details={"method": "sso", **details},
            application=application,
            auth_time=datetime.fromtimestamp(auth_time, UTC) if auth_time is not None else None,
        )

    def complete_registration(self, user: User, client: ClientInfo) -> SignInResult:
        """Start a session for an account just created with its password (through an
        invitation link, which proved the mailbox)."""
        return self._complete(user, client, amr="pwd", details={"method": "registration"})

    def _complete(
        self,
        user: User,
        client: ClientInfo,
        *,
        amr: str,
        tag: EventTag = EventTag.LOGIN_SUCCESS,
        details: dict[str, str] | None = None,
        application: Application = ACCOUNT,
        auth_time: datetime | None = None,
    ) -> SignInResult:
        started = self.sessions.start(user, client, amr=amr, auth_time=auth_time)
        record_event(
            self.db,
            tag,
            user_id=user.id,
            organization_id=self.accounts.primary_organization_of(user),
            actor=Actor(ip=client.ip, user_agent=client.user_agent),
            device_id=started.session.device_id,
            session_id=started.session.id,
            product=application.product,
            details={**(details or {"method": "password"}), "amr": amr.split()},
        )
        device = started.device
        self.c.observer.on_sign_in_success(
            user,
            device,
            started.new_device,
            client.ip,
            application.name,
            via_sso="fed" in amr.split(),
        )
        self.db.commit()
        self.sessions.cache(started.token, started.session)
        return SignInResult(
            started=started,
            user_id=user.id,
            device_trust_token=self.c.trust.issue(user.id, device.id, user.password_hash),
        )

    def replace_session(
        self, session_id: str, user_id: str, result: SignInResult, client: ClientInfo
    ) -> None:
        """End the session a browser had before ``result`` signed it in. The same user signing
        in again (prompt=login, max_age): the old session is replaced, and what relying
        services got under it ends when the new one is signed out. Someone else: the first
        user is signed out."""
        if user_id == result.user_id:
            self.sessions.end(session_id, "reauthenticated", replaced_by=result.started.session.id)
        else:
            self.sign_out(session_id, user_id, client)

    def sign_out(self, session_id: str, user_id: str, client: ClientInfo) -> None:
        if self.sessions.end(session_id, "logout"):
            self._record_sign_out(session_id, user_id, client)

    def sign_out_timed_out(self, row: UserSession, client: ClientInfo) -> None:
        """ "Sign out" in a browser whose session has already timed out (idle on a page for
        longer than the idle limit): the tokens the session gave relying services end as at
        any sign-out, and the sign-out is recorded."""
        if self.sessions.end_timed_out(row, "logout"):
            self._record_sign_out(row.id, row.user_id, client)

    def _record_sign_out(self, session_id: str, user_id: str, client: ClientInfo) -> None:
        record_event(
            self.db,
            EventTag.LOGOUT,
            user_id=user_id,
            organization_id=self.accounts.primary_organization_id(user_id),
            actor=Actor(ip=client.ip, user_agent=client.user_agent),
            session_id=session_id,
        )
        self.db.commit()
