"""Session lifetimes and ending, through SessionService with a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from idp.models import UserSession
from idp.runtime import Runtime
from idp.security.devices import ClientInfo
from idp.security.sessions import TOUCH_INTERVAL_SECONDS, SessionService
from tests.helpers import create_user

CLIENT = ClientInfo(ip="192.0.2.10", user_agent="Mozilla/5.0 (Windows NT 10.0) Firefox/128.0")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _service(runtime: Runtime, db: object, clock: Clock) -> SessionService:
    return SessionService(db, runtime.store, runtime.settings, clock)  # type: ignore[arg-type]


def _start(runtime: Runtime, clock: Clock) -> str:
    user = create_user(runtime)
    with runtime.session_factory() as db:
        service = _service(runtime, db, clock)
        started = service.start(user, CLIENT)
        db.commit()
        service.cache(started.token, started.session)
        return started.token


def test_session_resolves_to_its_user_until_idle_timeout(runtime: Runtime) -> None:
    clock = Clock()
    token = _start(runtime, clock)
    idle = timedelta(minutes=runtime.settings.session_idle_minutes)
    with runtime.session_factory() as db:
        service = _service(runtime, db, clock)
        active = service.resolve(token)
        assert active is not None
        clock.now += idle - timedelta(minutes=1)
        assert service.resolve(token) is not None  # activity keeps it alive
        # Nothing for longer than the idle lifetime: the store entry is gone (TTL), and the
        # database's last activity (written at most once a minute) is too old.
        runtime.store.client.delete(runtime.store.session_key(_hash(token)))
        clock.now += idle + timedelta(seconds=TOUCH_INTERVAL_SECONDS + 1)
        assert service.resolve(token) is None
        row = db.get(UserSession, active.session_id)
        assert row is not None and row.end_reason == "idle"


def test_session_ends_at_its_absolute_lifetime_despite_activity(runtime: Runtime) -> None:
    clock = Clock()
    token = _start(runtime, clock)
    absolute = timedelta(minutes=runtime.settings.session_absolute_minutes)
    with runtime.session_factory() as db:
        service = _service(runtime, db, clock)
        step = timedelta(minutes=runtime.settings.session_idle_minutes - 1)
        while clock.now + step < datetime(2026, 1, 5, 9, 0, tzinfo=UTC) + absolute:
            clock.now += step
            assert service.resolve(token) is not None
        clock.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC) + absolute
        assert service.resolve(token) is None
        assert db.query(UserSession).one().end_reason == "expired"


def test_ending_a_session_takes_effect_for_every_process(runtime: Runtime) -> None:
    clock = Clock()
    token = _start(runtime, clock)
    # Two independent services (as in two server processes) share database and store.
    with runtime.session_factory() as db_a, runtime.session_factory() as db_b:
        a, b = _service(runtime, db_a, clock), _service(runtime, db_b, clock)
        active = b.resolve(token)
        assert active is not None
        assert a.end(active.session_id, "ended_by_user") is True
        assert b.resolve(token) is None
        assert a.end(active.session_id, "ended_by_user") is False  # already ended


def test_last_activity_reaches_the_database_at_most_once_a_minute(runtime: Runtime) -> None:
    clock = Clock()
    token = _start(runtime, clock)
    with runtime.session_factory() as db:
        service = _service(runtime, db, clock)
        session_id = service.resolve(token).session_id  # type: ignore[union-attr]
        first = db.get(UserSession, session_id).last_seen_at  # type: ignore[union-attr]
        clock.now += timedelta(seconds=10)
        service.resolve(token)
        db.expire_all()
        assert db.get(UserSession, session_id).last_seen_at == first  # type: ignore[union-attr]
        runtime.store.client.delete(runtime.store.session_touch_key(session_id))  # interval over
        service.resolve(token)
        db.expire_all()
        assert db.get(UserSession, session_id).last_seen_at == clock.now  # type: ignore[union-attr]


def test_garbage_tokens_resolve_to_nothing(runtime: Runtime) -> None:
    with runtime.session_factory() as db:
        service = _service(runtime, db, Clock())
        for token in (None, "", "x" * 5000, "not-a-session", "'; DROP TABLE sessions; --"):
            assert service.resolve(token) is None


def _hash(token: str) -> str:
    from idp.security.devices import hash_key

    return hash_key(token)
