"""Account lockout with a user-chosen threshold (OWASP Authentication Cheat Sheet, "Account
Lockout"; NIST SP 800-63B §5.2.2).

Attempts are counted before the password is checked: each attempt atomically takes a numbered
slot in the store (INCR), and only slots 1..T may verify a password. N concurrent wrong
attempts against a threshold T therefore cause exactly T verifications; the attempt that fails
in slot T locks the account (a failure past it too, should the account not be locked yet:
:meth:`LockoutService.lock` locks once, whichever comes first). The count is forgotten
``lockout_window_minutes`` after the first attempt and reset by a successful sign-in. The
lock itself is durable (the users row), so losing the store never unlocks anyone.

The counters' key holds the user's ``lockout_epoch``, which every unlock increments in the
unlock's transaction: the unlocked account starts from a fresh count in every process, even
where each process has its own in-process store (an operator's ``idp user unlock`` cannot
clear the server's), and concurrent attempts within one epoch still share one exact count.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import gettext
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from idp.accounts import memberships_of
from idp.events import Actor, EventTag, record_event
from idp.models import OneTimeToken, User, utcnow
from idp.security.devices import hash_key
from idp.security.ratelimit import RateLimiter
from idp.settings import Settings
from idp.store import Store

ACCOUNT_BUCKET = "account"
UNLOCK_PURPOSE = "unlock"


@dataclass(frozen=True)
class Slot:
    """An attempt's place in its bucket's count."""

    bucket: str
    number: int
    threshold: int

    @property
    def may_verify(self) -> bool:
        return self.number <= self.threshold

    @property
    def is_last(self) -> bool:
        return self.number == self.threshold


class UnlockError(Exception):
    """An unlock link that cannot be used (unknown, used, expired, or for an older lock)."""


class LockoutService:
    def __init__(
        self, db: Session, store: Store, settings: Settings, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self.limiter = RateLimiter(store)
        self.window = settings.lockout_window_minutes * 60
        self.clock = clock

    # Thresholds --------------------------------------------------------------------------
    def floor(self, user: User) -> int:
        """The lowest threshold this user may choose: the instance minimum, raised by any of
        the user's organizations."""
        floors = [m.organization.lockout_floor for m in memberships_of(self.db, user)]
        return max([self.settings.lockout_min_threshold, *[f for f in floors if f]])

    def threshold(self, user: User) -> int:
        chosen = user.lockout_threshold or self.settings.lockout_default_threshold
        return min(self.settings.lockout_max_threshold, max(self.floor(user), chosen))

    def choose_threshold(self, user: User, value: int, actor: Actor) -> None:
        low, high = self.floor(user), self.settings.lockout_max_threshold
        if not low <= value <= high:
            raise ValueError(
                gettext("Choose a number from %(low)s to %(high)s.", low=low, high=high)
            )
        previous = self.threshold(user)
        user.lockout_threshold = value
        record_event(
            self.db,
            EventTag.LOCKOUT_THRESHOLD_CHANGED,
            user_id=user.id,
            actor=actor,
            details={"from": previous, "to": value},
        )
        self.db.commit()

    # Counting ----------------------------------------------------------------------------
    def _key(self, user: User, bucket: str) -> str:
        return self.store.key("lockout", user.id, str(user.lockout_epoch or 0), bucket)

    def take_slot(self, user: User, bucket: str) -> Slot:
        hit = self.limiter.hit(self._key(user, bucket), self.window)
        return Slot(bucket, hit.count, self.threshold(user))

    def reset(self, user: User, bucket: str) -> None:
        self.limiter.reset(self._key(user, bucket))

    # Locking -----------------------------------------------------------------------------
    def lock(self, user: User, actor: Actor) -> str | None:
        """Lock the account (in the caller's transaction) and return a raw unlock token; None
        when it is locked already. One conditional UPDATE: of several attempts that lock at
        once, one locks (one event, one unlock mail)."""
        now, lock_id = self.clock(), str(uuid.uuid4())
        locked = self.db.execute(
            update(User)
            .where(User.id == user.id, User.locked_at.is_(None))
            .values(locked_at=now, lock_id=lock_id)
            .execution_options(synchronize_session=False)
        )
        if locked.rowcount != 1:  # type: ignore[attr-defined]
            return None
        set_committed_value(user, "locked_at", now)
        set_committed_value(user, "lock_id", lock_id)
        record_event(
            self.db,
            EventTag.ACCOUNT_LOCKED,
            user_id=user.id,
            actor=actor,
            details={"threshold": self.threshold(user)},
        )
        return self.issue_unlock_token(user)

    def issue_unlock_token(self, user: User) -> str:
        """A single-use, expiring unlock token bound to the current lock (stored hashed)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        self.db.add(
            OneTimeToken(
                purpose=UNLOCK_PURPOSE,
                user_id=user.id,
                token_hash=hash_key(token),
                binding=user.lock_id,
                created_at=now,
                expires_at=now + timedelta(minutes=self.settings.unlock_link_minutes),
            )
        )
        return token

    def find_unlock(self, token: str) -> tuple[OneTimeToken, User]:
        """The usable unlock token and its user, or :class:`UnlockError`."""
        if not token or len(token) > 100:
            raise UnlockError("unknown")
        row = self.db.scalar(
            select(OneTimeToken).where(
                OneTimeToken.token_hash == hash_key(token), OneTimeToken.purpose == UNLOCK_PURPOSE
            )
        )
        if row is None:
            raise UnlockError("unknown")
        user = self.db.get(User, row.user_id)
        if user is None or row.used_at is not None:
            raise UnlockError("used")
        if row.expires_at <= self.clock():
            raise UnlockError("expired")
        if user.locked_at is None or row.binding != user.lock_id:
            raise UnlockError("stale")  # issued for a lock that has since ended
        return row, user

    def redeem_unlock(self, token: str, actor: Actor) -> User:
        """Use an unlock link once (atomically) and unlock the account; the caller commits."""
        row, user = self.find_unlock(token)
        used = self.db.execute(
            update(OneTimeToken)
            .where(OneTimeToken.id == row.id, OneTimeToken.used_at.is_(None))
            .values(used_at=self.clock())
        )
        if used.rowcount != 1:  # type: ignore[attr-defined]
            self.db.rollback()
            raise UnlockError("used")
        if not self.unlock(user, actor, by="self-service", lock_id=row.binding):
            self.db.rollback()
            raise UnlockError("stale")  # the lock ended (or another began) since the check
        return user

    def unlock(
        self,
        user: User,
        actor: Actor,
        *,
        by: str,
        admin_id: str | None = None,
        lock_id: str | None = None,
    ) -> bool:
        """Unlock and start a fresh count (a new epoch: see the module docstring), in the
        caller's transaction (the caller commits). False when the account is not locked.

        Only the lock ``lock_id`` is lifted (default: the lock ``user`` was read with), with
        one conditional UPDATE: of two unlocks of one lock at once, one unlocks and the other
        finds nothing to do (one event, one mail), and a lock that began after the caller
        looked (the account unlocked and locked again meanwhile) stands."""
        expected = lock_id if lock_id is not None else user.lock_id
        if user.locked_at is None or expected is None:
            return False
        # This process's store, under the epoch that ends here: the old count is dead anyway.
        self.reset(user, ACCOUNT_BUCKET)
        lifted = self.db.execute(
            update(User)
            .where(User.id == user.id, User.lock_id == expected, User.locked_at.is_not(None))
            .values(locked_at=None, lock_id=None, lockout_epoch=User.lockout_epoch + 1)
            .execution_options(synchronize_session="fetch")
        )
        if lifted.rowcount != 1:  # type: ignore[attr-defined]
            self.db.refresh(user)
            return False
        record_event(
            self.db,
            EventTag.ACCOUNT_UNLOCKED,
            user_id=user.id,
            actor=actor,
            details={"by": by, **({"admin_id": admin_id} if admin_id else {})},
        )
        return True
