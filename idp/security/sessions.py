"""Server-side browser sessions (OWASP Session Management Cheat Sheet).

The cookie carries only a random token; the database keeps its SHA-256 with the session row
(the durable truth) and the store caches ``token hash -> session`` with the idle lifetime as
TTL, so most requests cost one store read. Last activity reaches the database at most once a
minute per session. Ending a session marks the row and drops the cache entry, which every
process sees at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.models import Device, User, UserSession, utcnow
from idp.security.devices import ClientInfo, hash_key, identify_device, new_browser_key
from idp.settings import Settings
from idp.store import Store

TOUCH_INTERVAL_SECONDS = 60

# Called inside the transaction that ends a session (db, session id, reason): the provider
# revokes the session's tokens and queues back-channel logouts there.
SessionEndHook = Callable[[Session, str, str], None]


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
class StartedSession:
    token: str
    browser_key: str
    session: UserSession
    new_device: bool = False


class SessionService:
    def __init__(
        self,
        db: Session,
        store: Store,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        on_end: SessionEndHook | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.on_end = on_end
        self.idle = timedelta(minutes=settings.session_idle_minutes)
        self.absolute = timedelta(minutes=settings.session_absolute_minutes)
        self.clock = clock

    def start(self, user: User, client: ClientInfo, *, amr: str = "pwd") -> StartedSession:
        """Create a session (and device) for ``user``; the caller commits."""
        now = self.clock()
        browser_key = client.browser_key or new_browser_key()
        device, new_device = identify_device(self.db, user.id, client, browser_key, now)
        self.db.flush()
        token = secrets.token_urlsafe(32)
        row = UserSession(
            token_hash=hash_key(token),
            user_id=user.id,
            device_id=device.id,
            ip=client.ip,
            amr=amr,
            auth_time=now,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.absolute,
        )
        self.db.add(row)
        self.db.flush()
        return StartedSession(
            token=token, browser_key=browser_key, session=row, new_device=new_device
        )

    def cache(self, token: str, row: UserSession) -> None:
        """Publish a committed session to the store. Its rows were just written, so the
        next minute's activity need not be written again."""
        active = _active(row)
        pipe = self.store.client.pipeline(transaction=False)
        pipe.set(
            self.store.session_key(hash_key(token)),
            json.dumps(asdict(active)),
            ex=self._ttl(active),
        )
        pipe.set(self.store.session_touch_key(active.session_id), "1", ex=TOUCH_INTERVAL_SECONDS)
        pipe.execute()

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
            self.store.client.expire(key, self._ttl(active))
            self._touch(active, now)
            return active
        row = self.db.scalar(select(UserSession).where(UserSession.token_hash == token_hash))
        if row is None or row.ended_at is not None:
            return None
        if row.expires_at <= now:
            self.end(row.id, "expired")
            return None
        if row.last_seen_at + self.idle + timedelta(seconds=TOUCH_INTERVAL_SECONDS) <= now:
            self.end(row.id, "idle")
            return None
        # The store lost the entry (restart, flush): the database is the truth, rebuild it.
        self.cache(token, row)
        active = _active(row)
        self._touch(active, now)
        return active

    def end(self, session_id: str, reason: str) -> bool:
        """End a session everywhere; True when it was still live. Commits."""
        row = self.db.get(UserSession, session_id)
        if row is None:
            return False
        self.store.client.delete(self.store.session_key(row.token_hash))
        if row.ended_at is not None:
            return False
        row.ended_at = self.clock()
        row.end_reason = reason
        if self.on_end is not None:
            self.on_end(self.db, row.id, reason)
        self.db.commit()
        return True

    def _ttl(self, active: ActiveSession) -> int:
        remaining = int(active.expires_at - self.clock().timestamp())
        return max(1, min(int(self.idle.total_seconds()), remaining))

    def _touch(self, active: ActiveSession, now: datetime) -> None:
        """Record activity in the database at most once per interval per session."""
        if not self.store.client.set(
            self.store.session_touch_key(active.session_id),
            "1",
            nx=True,
            ex=TOUCH_INTERVAL_SECONDS,
        ):
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
