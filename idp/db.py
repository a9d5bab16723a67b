"""Engine and session handling (SQLAlchemy 2): SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Engine, Select, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement


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


# How long opening a PostgreSQL connection may take, unless the URL says (?connect_timeout=).
CONNECT_TIMEOUT_SECONDS = 10


def connect_timeout_args(url: URL) -> dict[str, Any]:
    """The ``connect_args`` of every PostgreSQL engine (also the migrations'). libpq's own
    default is to wait as long as TCP does: minutes for a host that drops packets, forever for
    one that accepts and never answers; every ``idp`` command, ``idp db upgrade``, the worker
    and ``/readyz`` then hung instead of saying the database does not answer."""
    if url.get_backend_name() != "postgresql" or "connect_timeout" in url.query:
        return {}
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS}


def make_engine(database_url: str) -> Engine:
    """The engine of ``database_url``. ``hide_parameters``: a database error's message (which
    reaches the logs with the traceback of an unexpected error, an outbox item's
    ``last_error`` and ``idp outbox failed``) never carries the statement's values: outbox
    payloads hold one-time links, rows hold password hashes and sealed secrets (OWASP Logging
    Cheat Sheet, "Data to exclude")."""
    url = normalize_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, hide_parameters=True
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        hide_parameters=True,
        connect_args=connect_timeout_args(url),
    )
    event.listen(engine, "checkin", _remember_checkin)
    event.listen(engine, "checkout", _ping_if_idle(engine))
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


class HotSelect:
    """A single-row ``SELECT`` that hot endpoints run on every request (introspection,
    userinfo, client authentication), with as little work around the round trip as possible.

    On PostgreSQL the statement is compiled once and run on the psycopg cursor of the given
    SQLAlchemy connection, with the columns' bind and result processors applied here: what
    SQLAlchemy's execution context and ``CursorResult`` would do, without their per-call cost
    (half of an introspection's CPU). psycopg prepares the statement server-side after a few
    runs (``prepare_threshold``). Any driver error makes the same statement run again the usual
    way, so a broken connection is invalidated and reported (``OperationalError``) exactly as
    for every other query. On other databases it is the usual ``execute``.

    A statement with data-modifying WITH parts (the one-round-trip client-credentials grant)
    belongs on an autocommit connection: it is its own transaction, and when it fails it wrote
    nothing, so running it again fails the same way."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def one(self, connection: Connection, params: dict[str, Any]) -> tuple[Any, ...]:
        """The statement's one row as a tuple (the statement must always return one row)."""
        driver_connection = _driver_connection(connection)
        if driver_connection is None:
            return tuple(connection.execute(self.statement, params).one())
        compiled = _compiled_for(self._compiled, self.statement, connection.dialect)
        try:
            with driver_connection.cursor() as cursor:
                cursor.execute(compiled.sql, compiled.bind(params))
                row = cursor.fetchone()
        except connection.dialect.loaded_dbapi.Error:
            return tuple(connection.execute(self.statement, params).one())
        if row is None:  # the statement is written to return one row: let SQLAlchemy say so
            return tuple(connection.execute(self.statement, params).one())
        return compiled.result(row)


class HotWrite:
    """A data-modifying statement that returns nothing (the one-statement client-credentials
    grant), run like :class:`HotSelect` on the psycopg cursor of an AUTOCOMMIT connection:
    the statement is its own transaction, committed when it returns.

    Only on a connection whose driver is in autocommit (the request's reader): on any other
    (and on other databases) it is the usual ``execute``, in SQLAlchemy's transaction. A driver
    error runs the statement again the usual way: in autocommit a failed statement wrote
    nothing, so the second run fails the same way and SQLAlchemy reports it (an
    ``IntegrityError``, or an ``OperationalError`` that invalidates a broken connection) as
    for every other write."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def execute(self, connection: Connection, params: dict[str, Any]) -> None:
        driver_connection = _driver_connection(connection)
        if driver_connection is None or not driver_connection.autocommit:
            connection.execute(self.statement, params)
            return
        compiled = _compiled_for(self._compiled, self.statement, connection.dialect)
        try:
            with driver_connection.cursor() as cursor:
                cursor.execute(compiled.sql, compiled.bind(params))
        except connection.dialect.loaded_dbapi.Error:
            connection.execute(self.statement, params)


def _driver_connection(connection: Connection) -> Any:
    """The psycopg connection under ``connection``, or None: not PostgreSQL, invalidated
    (SQLAlchemy then reconnects or says why), or neither in autocommit nor in a transaction
    SQLAlchemy began (a statement run there behind SQLAlchemy's back would open a transaction
    SQLAlchemy does not know about: its commit would not commit it)."""
    if connection.dialect.name != "postgresql":
        return None
    driver_connection = connection.connection.driver_connection
    if driver_connection is None:
        return None
    if not driver_connection.autocommit and not connection.in_transaction():
        return None
    return driver_connection


def _compiled_for(
    cache: dict[str, _Compiled], statement: Executable, dialect: Dialect
) -> _Compiled:
    compiled = cache.get(dialect.name)
    if compiled is None:
        compiled = cache[dialect.name] = _Compiled(statement, dialect)
    return compiled


class _Compiled:
    """A statement's SQL for one dialect and its columns' bind/result processors."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=dialect))
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)
        self.binders = {
            name: processor
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        selected = statement.selected_columns if isinstance(statement, Select) else ()
        self.readers = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in selected
        ]

    def bind(self, params: dict[str, Any]) -> dict[str, Any]:
        values = {**self.defaults, **params}
        for name, processor in self.binders.items():
            if name in values:
                values[name] = processor(values[name])
        return values

    def result(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if reader is None else reader(value)
            for value, reader in zip(row, self.readers, strict=True)
        )


class ReaderPool:
    """Autocommit connections for single-statement reads, kept between requests.

    Why: introspection, userinfo and client authentication each run one ``SELECT``; checking
    a connection out of the engine's pool, switching it to autocommit and back and checking it
    in cost about as much CPU as the query. Connections released here stay in autocommit, up
    to ``size`` of them, and the next request takes the most recently used one.

    One that waited here longer than :data:`IDLE_PING_SECONDS` goes back to the engine's pool
    marked as idle since its last use, so the pool pings it on checkout exactly as it does
    every other idle connection (:func:`_ping_if_idle`: a PostgreSQL restart or a pooler
    closing idle connections is noticed there). A connection SQLAlchemy invalidated (a
    disconnect during a query) or one of a parent process (after a fork) is never kept."""

    def __init__(self, engine: Engine, size: int = 4) -> None:
        self.engine = engine
        self.size = size
        self._free: list[tuple[Connection, float]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def acquire(self) -> Connection:
        now = time.monotonic()
        stale: list[tuple[Connection, float]] = []
        found: Connection | None = None
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's connections are not ours
                self._free, self._pid = [], os.getpid()
            while self._free:
                connection, used_at = self._free.pop()
                if now - used_at <= IDLE_PING_SECONDS:
                    found = connection
                    break
                stale.append((connection, used_at))
        for connection, used_at in stale:
            self._check_in_idle_since(connection, used_at)
        if found is not None:
            return found
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def release(self, connection: Connection) -> None:
        if connection.closed or connection.invalidated or self._pid != os.getpid():
            connection.close()
            return
        with self._lock:
            if len(self._free) < self.size:
                self._free.append((connection, time.monotonic()))
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for connection, _ in free:
            connection.close()

    @staticmethod
    def _check_in_idle_since(connection: Connection, used_at: float) -> None:
        """Return ``connection`` to the engine's pool as idle since ``used_at``."""
        info = connection.info
        connection.close()  # the checkin listener records "now"...
        info[_CHECKED_IN_AT] = used_at  # ...but it has been idle since its last use
