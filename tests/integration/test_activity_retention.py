"""Retention: `idp events purge` deletes exactly the events older than the retention period."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from idp.activity import purge_events
from idp.db import make_engine, make_session_factory
from idp.events import EventTag
from idp.models import Event
from idp.runtime import Runtime
from tests.services import run_idp

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _seed(
    session_factory: sessionmaker[Session], *ages: timedelta, now: datetime = NOW
) -> list[int]:
    with session_factory() as db:
        rows = [Event(occurred_at=now - age, user_id="u", action=EventTag.LOGIN_SUCCESS)
                for age in ages]
        db.add_all(rows)
        db.commit()
        return [r.id for r in rows]


def _remaining(session_factory: sessionmaker[Session]) -> list[int]:
    with session_factory() as db:
        return list(db.scalars(select(Event.id).order_by(Event.id)))


def test_purge_deletes_only_events_older_than_the_retention(runtime: Runtime) -> None:
    day = timedelta(days=1)
    second = timedelta(seconds=1)
    ids = _seed(runtime.session_factory, 1000 * day, 400 * day + second, 400 * day - second,
                10 * day, timedelta(0), 401 * day)
    with runtime.session_factory() as db:
        result = purge_events(db, 400, now=NOW, batch=1)  # one row per batch: the loop runs
    assert result.deleted == 3
    assert result.before == NOW - 400 * day
    assert _remaining(runtime.session_factory) == [ids[2], ids[3], ids[4]]
    with runtime.session_factory() as db:
        assert purge_events(db, 400, now=NOW).deleted == 0


def test_the_purge_command_says_how_many_events_it_deleted(
    env: dict[str, str], database_url: str
) -> None:
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    ids = _seed(factory, timedelta(days=90), timedelta(days=31), timedelta(days=29), now=now)

    result = run_idp("events", "purge", "--json", env={**env, "IDP_EVENT_RETENTION_DAYS": "30"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["deleted"] == 2 and data["retention_days"] == 30
    assert datetime.fromisoformat(data["before"]) < now - timedelta(days=29)
    assert _remaining(factory) == [ids[2]]

    again = run_idp("events", "purge", env={**env, "IDP_EVENT_RETENTION_DAYS": "30"})
    assert again.returncode == 0
    assert again.stdout.startswith("deleted 0 events older than 30 days")
    engine.dispose()


def test_a_bad_retention_stops_the_command_with_one_line(env: dict[str, str]) -> None:
    result = run_idp("events", "purge", env={**env, "IDP_EVENT_RETENTION_DAYS": "0"})
    assert result.returncode != 0
    assert result.stderr.strip() == "idp: IDP_EVENT_RETENTION_DAYS: must be at least 1"
