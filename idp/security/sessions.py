"""Server-side browser sessions (OWASP Session Management Cheat Sheet).

The cookie carries only a random token; the database keeps its SHA-256 with the session row
(the durable truth) and the store caches ``token hash -> session`` with the idle lifetime as
TTL, so most requests cost two store round trips and no database access. Every request notes
its time in the store (``session-seen``); last activity reaches the database at most once a
minute per session. Ending a session marks the row and drops the cache entry, which every
process sees at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.models import Device, User, UserSession, utcnow
from idp.security.devices import ClientInfo, hash_key, identify_device, new_browser_key
from idp.settings import Settings
from idp.store import Store

TOUCH_INTERVAL_SECONDS = 60
# How long an ended session's token may not be cached again: far longer than any request that
# read the row before the ending committed takes to finish.
ENDED_GUARD_SECONDS = 60
# End reasons of a session that timed out (see resolve()).
TIMEOUT_REASONS = frozenset({"idle", "expired"})
# What the end hook is told when a timed-out session is signed out afterwards: end what it
# left that is still live (what a password reset, say, ended meanwhile was told already).
SIGN_OUT_AFTER_TIMEOUT = "logout_after_timeout"

# Publish a session to the store unless it is being ended (KEYS: entry, touch throttle, ended
# guard; ARGV: entry, entry TTL, touch TTL). One script, so the check and the write are atomic.
_CACHE_UNLESS_ENDED = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[3]))
return 1
"""

# Called inside the transaction that ends a session (db, session id, reason): the provider
# revokes the session's tokens and queues back-channel logouts there.
SessionEndHook = Callable[[Session, str, str], None]
# Called inside the transaction that ends every other session of a user (db, user id, reason,
# the session kept or None): the provider revokes what the user's ended sessions left.
UserSessionsEndHook = Callable[[Session, str, str, str | None], None]


@dataclass(frozen=True)
class ActiveSession:
    """A live session as the rest of the application sees it."""

    session_id: str
    user_id: str
    device_id: str
    auth_time: float
    expires_at: float
    amr: str


@dataclass(frozen=True)
class LiveSession:
    """A session row that :meth:`SessionService.resolve` would accept now, with its latest
    activity (from the store when fresher than the database's once-a-minute copy)."""

    row: UserSession
    last_activity: datetime


@dataclass(frozen=True)
class StartedSession:
    """A new session row and the device it runs on. ``device`` is the object
    :meth:`SessionService.start` loaded or created: the ORM's identity map holds clean objects
    only weakly, so without this reference reading it again by id would cost a SELECT."""

    token: str
    browser_key: str
    session: UserSession
    device: Device
    new_device: bool = False


class SessionService:
    def __init__(
        self,
        db: Session,
        store: Store,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        on_end: SessionEndHook | None = None,
        on_end_user: UserSessionsEndHook | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.on_end = on_end
        self.on_end_user = on_end_user
        self.idle = timedelta(minutes=settings.session_idle_minutes)
        self.absolute = timedelta(minutes=settings.session_absolute_minutes)
        self.clock = clock
        self._cache_unless_ended = store.client.register_script(_CACHE_UNLESS_ENDED)

    def start(
        self,
        user: User,
        client: ClientInfo,
        *,
        amr: str = "pwd",
        auth_time: datetime | None = None,
    ) -> StartedSession:
        """Create a session (and device) for ``user``; the caller commits. ``auth_time``:
        when the user authenticated, if before now (at an upstream identity provider)."""
        now = self.clock()
        browser_key = client.browser_key or new_browser_key()
        device, new_device = identify_device(self.db, user.id, client, browser_key, now)
        token = secrets.token_urlsafe(32)
        # Linked through the relationship, so that one flush writes the device first and then
        # the session with the device's id (a flush per row costs a unit of work each).
        row = UserSession(
            token_hash=hash_key(token),
            user_id=user.id,
            device=device,
            ip=client.ip,
            amr=amr,
            auth_time=min(auth_time, now) if auth_time is not None else now,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.absolute,
        )
        self.db.add(row)
        self.db.flush()
        return StartedSession(
            token=token,
            browser_key=browser_key,
            session=row,
            device=device,
            new_device=new_device,
        )

    def cache(self, token: str, row: UserSession) -> bool:
        """Publish a committed session to the store; False when it is being ended. Its rows
        were just written, so the next minute's activity need not be written again."""
        active = _active(row)
        token_hash = hash_key(token)
        done = self._cache_unless_ended(
            keys=[
                self.store.session_key(token_hash),
                self.store.session_touch_key(active.session_id),
                self.store.session_ended_key(token_hash),
            ],
            args=[json.dumps(asdict(active)), self._ttl(active), TOUCH_INTERVAL_SECONDS],
        )
        return bool(done)

    def resolve(self, token: str | None) -> ActiveSession | None:
        """The live session behind a cookie token, or None (unknown, ended, idle, expired)."""
        if not token or len(token) > 100:
            return None
        token_hash = hash_key(token)
        key = self.store.session_key(token_hash)
        now = self.clock()
        cached = self.store.client.get(key)
        if cached is not None:
            active = ActiveSession(**json.loads(cached))
            if active.expires_at <= now.timestamp():
                self.end(active.session_id, "expired")
                return None
            self._touch(active, now, cache_key=key)
            return active
        row = self.db.scalar(select(UserSession).where(UserSession.token_hash == token_hash))
        if row is None or row.ended_at is not None:
            return None
        if row.expires_at <= now:
            self.end(row.id, "expired")
            return None
        if self._idle_in_database(row, now):
            self.end(row.id, "idle")
            return None
        # The store lost the entry (restart, flush): the database is the truth, rebuild it,
        # unless another request is ending the session right now.
        if not self.cache(token, row):
            return None
        active = _active(row)
        self._touch(active, now)
        return active

    def renew(self, session_id: str) -> str | None:
        """A new cookie token for a live session, the old one dead at once on every process
        (OWASP Session Management Cheat Sheet, "Renew the Session ID After Any Privilege Level
        Change": a copied cookie must not outlive a password change). Returns the new token,
        or None when the session is not live; the caller commits (:meth:`resolve` then caches
        the session again under the new token at its first request)."""
        row = self.db.get(UserSession, session_id)
        if row is None or row.ended_at is not None:
            return None
        pipe = self.store.client.pipeline(transaction=False)
        pipe.set(self.store.session_ended_key(row.token_hash), "1", ex=ENDED_GUARD_SECONDS)
        pipe.delete(self.store.session_key(row.token_hash))
        pipe.execute()
        token = secrets.token_urlsafe(32)
        row.token_hash = hash_key(token)
        return token

    def end_tokens_of_others(self, user_id: str, reason: str, keep: str | None) -> None:
        """After every other session of the user has ended: revoke what the sessions that
        timed out earlier left to relying services (their ends revoke nothing, see
        :data:`SessionEndHook`); the caller commits."""
        if self.on_end_user is not None:
            self.on_end_user(self.db, user_id, reason, keep)

    def timed_out(self, token: str | None) -> UserSession | None:
        """The session behind a cookie token when it ended by timing out (idle or past its
        absolute lifetime), for a sign-out that should still end what it left; else None."""
        if not token or len(token) > 100:
            return None
        row = self.db.scalar(select(UserSession).where(UserSession.token_hash == hash_key(token)))
        if row is None or row.end_reason not in TIMEOUT_REASONS:
            return None
        return row

    def end_timed_out(self, row: UserSession, reason: str) -> bool:
        """Sign out a session that had timed out (:meth:`timed_out`): its end reason becomes
        ``reason`` and the tokens it left that are still live end (with back-channel logouts,
        see :data:`SIGN_OUT_AFTER_TIMEOUT`); the caller commits. Once only, also for two
        sign-outs at the same instant: False for the one that did not claim it."""
        claimed = self.db.execute(
            update(UserSession)
            .where(UserSession.id == row.id, UserSession.end_reason.in_(TIMEOUT_REASONS))
            .values(end_reason=reason)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        if self.on_end is not None:
            self.on_end(self.db, row.id, SIGN_OUT_AFTER_TIMEOUT)
        return True

    def end(
        self, session_id: str, reason: str, *, commit: bool = True, replaced_by: str | None = None
    ) -> bool:
        """End a session everywhere; True when it was still live. Commits unless ``commit``
        is false (the caller then commits, e.g. with an event in the same transaction).
        ``replaced_by``: the session of the same user in the same browser that takes over
        (re-authentication); ending that one later ends this one's tokens too."""
        # Locked first: the guard and the drop below must name the committed token (a
        # password change may be renewing it at this very moment, see renew()).
        row = self.db.get(UserSession, session_id, with_for_update=True, populate_existing=True)
        if row is None:
            return False
        # Dropped before the commit, with a guard: a request that read the row before the
        # commit cannot cache it again (see cache()). Should the commit fail, resolve()
        # rebuilds the entry from the database, where the session is still live.
        pipe = self.store.client.pipeline(transaction=False)
        pipe.set(self.store.session_ended_key(row.token_hash), "1", ex=ENDED_GUARD_SECONDS)
        pipe.delete(self.store.session_key(row.token_hash), self.store.session_seen_key(row.id))
        pipe.execute()
        if row.ended_at is not None:
            return False
        row.ended_at = self.clock()
        row.end_reason = reason
        row.replaced_by = replaced_by
        if self.on_end is not None:
            self.on_end(self.db, row.id, reason)
        if commit:
            self.db.commit()
        return True

    def live_sessions(self, user_id: str) -> list[LiveSession]:
        """The user's sessions that :meth:`resolve` would accept now (not ended, not past the
        absolute lifetime, not idle), oldest first, with their latest activity. One database
        query and one store round trip, whatever the number of sessions."""
        now = self.clock()
        rows = list(
            self.db.scalars(
                select(UserSession)
                .where(
                    UserSession.user_id == user_id,
                    UserSession.ended_at.is_(None),
                    UserSession.expires_at > now,
                )
                .order_by(UserSession.created_at, UserSession.id)
            )
        )
        if not rows:
            return []
        pipe = self.store.client.pipeline(transaction=False)
        for row in rows:
            pipe.exists(self.store.session_key(row.token_hash))
            pipe.get(self.store.session_seen_key(row.id))
        answers = pipe.execute()
        live: list[LiveSession] = []
        for index, row in enumerate(rows):
            cached, seen = answers[2 * index], answers[2 * index + 1]
            # The same rule as resolve(): the store entry (its TTL is the idle lifetime) says
            # live; without it the database's last activity decides.
            if not cached and self._idle_in_database(row, now):
                continue
            last = row.last_seen_at
            if seen is not None:
                last = max(last, datetime.fromtimestamp(float(seen), UTC))
            live.append(LiveSession(row=row, last_activity=last))
        return live

    def _idle_in_database(self, row: UserSession, now: datetime) -> bool:
        # The database's copy may be up to one touch interval old.
        return row.last_seen_at + self.idle + timedelta(seconds=TOUCH_INTERVAL_SECONDS) <= now

    def _ttl(self, active: ActiveSession) -> int:
        remaining = int(active.expires_at - self.clock().timestamp())
        return max(1, min(int(self.idle.total_seconds()), remaining))

    def _touch(self, active: ActiveSession, now: datetime, cache_key: str | None = None) -> None:
        """Note the activity in the store on every request (one pipelined round trip, which
        also renews the cache entry's idle TTL), and in the database at most once per
        interval per session."""
        ttl = self._ttl(active)
        pipe = self.store.client.pipeline(transaction=False)
        if cache_key is not None:
            pipe.expire(cache_key, ttl)
        pipe.set(self.store.session_seen_key(active.session_id), repr(now.timestamp()), ex=ttl)
        pipe.set(
            self.store.session_touch_key(active.session_id),
            "1",
            nx=True,
            ex=TOUCH_INTERVAL_SECONDS,
        )
        if not pipe.execute()[-1]:
            return
        self.db.execute(
            update(UserSession).where(UserSession.id == active.session_id).values(last_seen_at=now)
        )
        self.db.execute(
            update(Device).where(Device.id == active.device_id).values(last_seen_at=now)
        )
        self.db.commit()


def _active(row: UserSession) -> ActiveSession:
    return ActiveSession(
        session_id=row.id,
        user_id=row.user_id,
        device_id=row.device_id,
        auth_time=row.auth_time.timestamp(),
        expires_at=row.expires_at.timestamp(),
        amr=row.amr,
    )
