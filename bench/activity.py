"""The activity log's filtered page query against 1,000,000 events in PostgreSQL: plan and timings.

Setup: its own PostgreSQL database (the idp schema by the Alembic migrations; dropped at the
end, also after a failure), ``--users`` accounts with one device each, an organization holding
the first ``--org-members`` of them, five applications, then ``--events`` events seeded in SQL
(INSERT ... SELECT over generate_series, secondary indexes rebuilt afterwards from the model's
own definitions), spread over the users, ``--days`` days, the event tags and products; ANALYZE.

Measured, each ``--runs`` times for a random user, through ``ActivityService.page`` — the code
/account/activity runs, with a fresh database session per run like a request: the first page of
user + date range (``--range-days`` ending today, in Europe/Zurich) + type of action
(sign-ins), and a deep page of user + the whole period + sign-ins reached by keyset cursor
(``--deep-page``). For information: the organization view and a free-text search. Prints
EXPLAIN (ANALYZE, BUFFERS) of each query's SQL, as the service sent it, and p50/p99.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session, sessionmaker

from idp.activity import (
    ActivityFilters,
    ActivityService,
    OrganizationScope,
    Scope,
    UserScope,
    parse_filters,
)
from idp.db import make_engine, make_session_factory
from idp.events import EventTag
from idp.migrate import upgrade
from idp.models import Client, Device, Event, Membership, Organization, Role, User

POSTGRES_ADMIN_URL = os.environ.get(
    "IDP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TARGET_P99_MS = 50.0
ZONE = "Europe/Zurich"
CLIENTS = ("mail", "drive", "calendar", "chat", "billing")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
# (tag, weight in 100): roughly what a real log holds.
MIX = (
    (EventTag.LOGIN_SUCCESS, 30),
    (EventTag.LOGIN_FAILURE, 12),
    (EventTag.SECOND_FACTOR_FAILURE, 2),
    (EventTag.LOGOUT, 10),
    (EventTag.SESSION_ENDED, 4),
    (EventTag.TOKEN_GRANTED, 25),
    (EventTag.TOKEN_REVOKED, 3),
    (EventTag.CONSENT_GRANTED, 4),
    (EventTag.CONSENT_REVOKED, 1),
    (EventTag.ACCOUNT_LOCKED, 1),
    (EventTag.ACCOUNT_UNLOCKED, 1),
    (EventTag.PASSWORD_CHANGED, 2),
    (EventTag.TWO_FACTOR_ENABLED, 1),
    (EventTag.ALERTS_CHANGED, 2),
    (EventTag.LOCKOUT_THRESHOLD_CHANGED, 2),
)


@dataclass(frozen=True)
class Options:
    events: int
    users: int
    org_members: int
    days: int
    range_days: int
    deep_page: int
    runs: int


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="default 1000000")
    parser.add_argument("--users", type=int, default=1000, help="default 1000")
    parser.add_argument("--org-members", type=int, default=100, help="default 100")
    parser.add_argument("--days", type=int, default=730, help="period of the log (default 730)")
    parser.add_argument(
        "--range-days", type=int, default=90, help="date range of the filter (default 90)"
    )
    parser.add_argument(
        "--deep-page", type=int, default=8, help="page number of the deep page (default 8)"
    )
    parser.add_argument("--runs", type=int, default=200, help="runs per query (default 200)")
    ns = parser.parse_args(argv)
    opts = Options(**vars(ns))
    if min(opts.events, opts.users, opts.days, opts.range_days, opts.runs, opts.deep_page) < 1:
        parser.error("every number must be at least 1")
    if not 0 <= opts.org_members <= opts.users:
        parser.error("--org-members must lie between 0 and --users")
    return opts


# Database ---------------------------------------------------------------------------------


def _admin_url_for(name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def bench_database() -> Iterator[str]:
    name = f"idp_bench_activity_{secrets.token_hex(5)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = _admin_url_for(name)
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"dropped database {name}")


@dataclass(frozen=True)
class Seeded:
    user_ids: list[str]
    organization_id: str
    seconds: float
    index_seconds: float
    analyze_seconds: float


def seed(engine: Engine, factory: sessionmaker[Session], opts: Options) -> Seeded:
    started = time.perf_counter()
    with factory() as db:
        org = Organization(name="Bench Corp")
        db.add(org)
        db.flush()
        users = [
            {
                "id": f"00000000-0000-4000-8000-{n:012d}",
                "email": f"user{n}@bench.example",
                "email_normalized": f"user{n}@bench.example",
                "first_name": "User",
                "last_name": str(n),
            }
            for n in range(opts.users)
        ]
        db.execute(insert(User), users)
        db.execute(
            insert(Device),
            [
                {
                    "id": f"10000000-0000-4000-8000-{n:012d}",
                    "user_id": u["id"],
                    "browser_key_hash": secrets.token_hex(32),
                    "user_agent": FIREFOX,
                    "browser": "Firefox 128",
                    "os": "Linux",
                }
                for n, u in enumerate(users)
            ],
        )
        db.execute(
            insert(Membership),
            [
                {"user_id": u["id"], "organization_id": org.id, "role": Role.MEMBER}
                for u in users[: opts.org_members]
            ],
        )
        db.execute(
            insert(Client),
            [
                {
                    "client_id": c,
                    "name": c.capitalize(),
                    "redirect_uris": [f"https://{c}.example/cb"],
                }
                for c in CLIENTS
            ],
        )
        db.commit()
        organization_id = org.id

    weighted = [str(tag) for tag, weight in MIX for _ in range(weight)]
    indexes = [i for i in Event.__table__.indexes]  # type: ignore[attr-defined]
    with engine.begin() as conn:
        for index in indexes:  # rebuilt after the load: much faster than row by row
            index.drop(conn)
        conn.execute(text("SELECT setseed(0.42)"))
        conn.execute(
            text(
                """
                INSERT INTO events (occurred_at, user_id, organization_id, product, action, ip,
                                    device_id, session_id, details)
                SELECT now() - random() * make_interval(days => :days),
                       '00000000-0000-4000-8000-' || lpad((g % :users)::text, 12, '0'),
                       CASE WHEN g % :users < :members THEN CAST(:org AS varchar) END,
                       CASE WHEN a.tag LIKE 'oauth:%'
                            THEN (CAST(:clients AS text[]))[1 + (g / 7) % 5]
                            ELSE 'account' END,
                       a.tag,
                       '198.51.100.' || (g % 250),
                       CASE WHEN a.tag = 'account:login:success'
                            THEN '10000000-0000-4000-8000-' || lpad((g % :users)::text, 12, '0')
                       END,
                       NULL,
                       CASE WHEN a.tag = 'account:login:failure'
                            THEN json_build_object(
                                'reason', CASE WHEN g % 10 = 0 THEN 'locked'
                                               ELSE 'bad_password' END,
                                'user_agent', CASE WHEN g % 2 = 0 THEN :firefox
                                                   ELSE :chrome END)
                            ELSE '{}'::json END
                FROM generate_series(1, :n) AS g
                CROSS JOIN LATERAL (
                    SELECT (CAST(:weighted AS text[]))[1 + floor(random() * :w)::int + g * 0]
                        AS tag
                ) AS a
                """
            ),
            {
                "days": opts.days,
                "users": opts.users,
                "members": opts.org_members,
                "org": organization_id,
                "clients": list(CLIENTS),
                "n": opts.events,
                "weighted": weighted,
                "w": len(weighted),
                "firefox": FIREFOX,
                "chrome": CHROME,
            },
        )
    seeded = time.perf_counter()
    with engine.begin() as conn:
        for index in indexes:
            index.create(conn)
    indexed = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    analyzed = time.perf_counter()
    return Seeded(
        [u["id"] for u in users],
        organization_id,
        seeded - started,
        indexed - seeded,
        analyzed - indexed,
    )


# Measuring --------------------------------------------------------------------------------


class StatementRecorder:
    """Keeps the SQL and parameters of the events query the service sends, for EXPLAIN."""

    def __init__(self, engine: Engine) -> None:
        self.last: tuple[str, Any] | None = None
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT events.id"):
            self.last = (statement, params)


def explain(engine: Engine, recorder: StatementRecorder) -> list[str]:
    assert recorder.last is not None
    statement, params = recorder.last
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all()
    return [r[0] for r in rows]


def summarize(plan: list[str]) -> list[str]:
    """The plan's nodes, conditions, row counts and times; buffers and widths left out."""
    keep = (
        "->",
        "Limit",
        "Index Cond",
        "Filter",
        "Rows Removed",
        "Sort",
        "Hash",
        "Recheck",
        "Execution Time",
        "Planning Time",
        "Join Filter",
        "Index Scan",
        "Bitmap",
    )
    lines = []
    for line in plan:
        if line.strip().startswith(keep) or "->" in line:
            lines.append("  " + line.rstrip())
    return lines


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass(frozen=True)
class Measured:
    name: str
    times_ms: list[float]
    rows: float
    plan: list[str]


def measure(
    name: str,
    engine: Engine,
    factory: sessionmaker[Session],
    recorder: StatementRecorder,
    runs: int,
    case: Callable[[int], tuple[Scope, ActivityFilters]],
) -> Measured:
    times, counts = [], []
    for i in range(runs + 5):  # five unmeasured runs first
        scope, filters = case(i)
        started = time.perf_counter()
        with factory() as db:
            page = ActivityService(db).page(scope, filters)
        elapsed = (time.perf_counter() - started) * 1000
        if i >= 5:
            times.append(elapsed)
            counts.append(len(page.rows))
    plan = explain(engine, recorder)  # the last run's query, as sent
    return Measured(name, times, statistics.fmean(counts), plan)


def deep_cursors(
    factory: sessionmaker[Session], users: list[str], filters: ActivityFilters, page: int
) -> tuple[dict[str, ActivityFilters], float]:
    """For each user, the filters positioned at the start of page ``page`` (or of their last
    page, when they have fewer), and the mean page number reached."""
    positioned, reached = {}, []
    with factory() as db:
        service = ActivityService(db)
        for user in users:
            current, number = filters, 1
            while number < page:
                result = service.page(UserScope(user), current)
                if result.next_cursor is None:
                    break
                current, number = current.after(result.next_cursor), number + 1
            positioned[user] = current
            reached.append(number)
    return positioned, statistics.fmean(reached)


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    zone = ZoneInfo(ZONE)
    today = datetime.now(UTC).astimezone(zone).date()
    with bench_database() as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        try:
            with engine.connect() as conn:
                version = conn.exec_driver_sql("SHOW server_version").scalar()
            print(
                f"idp activity-log benchmark: PostgreSQL {version}, {opts.events:,} events, "
                f"{opts.users} users over {opts.days} days, {opts.runs} runs per query"
            )
            seeded = seed(engine, factory, opts)
            print(
                f"seeded in {seeded.seconds:.1f} s (INSERT ... SELECT generate_series), indexes "
                f"built in {seeded.index_seconds:.1f} s, ANALYZE {seeded.analyze_seconds:.1f} s"
            )
            recorder = StatementRecorder(engine)
            pick = random.Random(7)
            users = seeded.user_ids
            runs_users = [pick.choice(users) for _ in range(opts.runs + 5)]

            ranged = parse_filters(
                {
                    "tz": ZONE,
                    "type": "sign-ins",
                    "from": (today - timedelta(days=opts.range_days - 1)).isoformat(),
                    "to": today.isoformat(),
                }
            )
            whole = parse_filters({"tz": ZONE, "type": "sign-ins"})
            deep, reached = deep_cursors(factory, sorted(set(runs_users)), whole, opts.deep_page)
            org = OrganizationScope(seeded.organization_id)
            searched = parse_filters({"tz": ZONE, "q": "wrong password"})

            results = [
                measure(
                    f"first page: user + {opts.range_days} days + sign-ins",
                    engine,
                    factory,
                    recorder,
                    opts.runs,
                    lambda i: (UserScope(runs_users[i]), ranged),
                ),
                measure(
                    f"deep page by keyset (page {reached:.1f} on average, {(reached - 1) * 50:.0f} "
                    f"rows before it): user + all {opts.days} days + sign-ins",
                    engine,
                    factory,
                    recorder,
                    opts.runs,
                    lambda i: (UserScope(runs_users[i]), deep[runs_users[i]]),
                ),
                measure(
                    f"(info) organization of {opts.org_members} members: first page, "
                    f"{opts.range_days} days + sign-ins",
                    engine,
                    factory,
                    recorder,
                    opts.runs,
                    lambda i: (org, ranged),
                ),
                measure(
                    "(info) user + free text 'wrong password', whole log",
                    engine,
                    factory,
                    recorder,
                    opts.runs,
                    lambda i: (UserScope(runs_users[i]), searched),
                ),
            ]
            failed = False
            for r in results:
                p50, p99 = percentile(r.times_ms, 0.50), percentile(r.times_ms, 0.99)
                verdict = ""
                if not r.name.startswith("(info)"):
                    ok = p99 < TARGET_P99_MS
                    failed |= not ok
                    verdict = f"  (target p99 < {TARGET_P99_MS:.0f} ms: {'ok' if ok else 'MISSED'})"
                print()
                print(f"{r.name}")
                print("plan (EXPLAIN ANALYZE of the last run's query, as ActivityService sent it):")
                print("\n".join(summarize(r.plan)))
                print(
                    f"ActivityService.page, {len(r.times_ms)} runs, {r.rows:.1f} rows a page: "
                    f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(r.times_ms):.2f} ms{verdict}"
                )
        finally:
            engine.dispose()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
