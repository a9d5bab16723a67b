"""Engine and session handling (SQLAlchemy 2): SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker


def normalize_url(database_url: str) -> URL:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while a sign-in writes; busy_timeout waits for the writer
    # instead of failing at once; SQLite enforces foreign keys only when asked.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# A pooled connection idle for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 1.0
_CHECKED_IN_AT = "idp_checked_in_at"


def _remember_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Any:
    """A pool ``checkout`` listener: SQLAlchemy's ``pool_pre_ping``, only for connections
    that sat idle in the pool for more than :data:`IDLE_PING_SECONDS`.

    Why not plain ``pool_pre_ping``: it costs one round trip (``SELECT 1``) on every checkout,
    a fifth of an introspection's database time under load. A connection reused within the
    second has just worked; one that sat idle longer (a PostgreSQL restart, a firewall or a
    pooler closing idle connections) is pinged exactly as pre-ping would, and a failed ping
    invalidates the whole pool (``InvalidatePoolError``, what pre-ping raises), so the request
    gets a fresh connection. A restart inside that second makes the request fail with
    ``OperationalError`` (a clean 503, idp/flows/errors.py), and SQLAlchemy then invalidates
    the pool as it does for any disconnect, exactly as when PostgreSQL restarts mid-request."""
    dialect = engine.dialect

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at <= IDLE_PING_SECONDS:
            return  # fresh from connect(), or reused within the second
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.InvalidatePoolError() from error

    return checkout


def make_engine(database_url: str) -> Engine:
    url = normalize_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10)
    event.listen(engine, "checkin", _remember_checkin)
    event.listen(engine, "checkout", _ping_if_idle(engine))
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
