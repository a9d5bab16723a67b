"""The long-lived collaborators of one application: settings, engine, store, password hasher.

Request-scoped services are built from these by the factories in :mod:`idp.services`.
"""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from idp.db import ReaderPool, make_engine, make_session_factory
from idp.security.passwords import PasswordService
from idp.settings import Settings
from idp.store import Store, connect_redis


class Runtime:
    def __init__(self, settings: Settings, *, one_shot: bool = False) -> None:
        """``one_shot``: for a command that ends when its work is done (``idp user unlock``):
        no warning about an in-process store, which matters only to what keeps running."""
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.session_factory = make_session_factory(self.engine)
        self.store = Store(
            connect_redis(settings, warn_in_process=not one_shot), settings.redis_prefix
        )
        self.passwords = PasswordService(settings)
        self.readers = ReaderPool(self.engine)

    def init_app(self, app: Flask) -> None:
        app.extensions["idp"] = self
        app.teardown_appcontext(_close_db)

    def close(self) -> None:
        self.readers.close()
        self.engine.dispose()
        self.store.client.close()


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["idp"]
    return rt


def request_db() -> Session:
    """The database session of the current request (closed when the request ends)."""
    if "db" not in g:
        g.db = runtime().session_factory()
    db: Session = g.db
    return db


def request_reader() -> Connection:
    """An autocommit Core connection of the current request, for reads only (closed when the
    request ends).

    Why: the protocol endpoints relying services call in bulk (introspection, userinfo, client
    authentication) only read. On the ORM :func:`request_db` each of them paid ``BEGIN`` and
    ``ROLLBACK`` round trips (psycopg sends ``BEGIN`` on its own) and the Session's bookkeeping
    around one or two ``SELECT``s; in autocommit each statement is its own snapshot, exactly
    what those single-statement reads need, and nothing is left to roll back. The connection
    comes from :class:`idp.db.ReaderPool` (kept in autocommit between requests). Never write
    on it: writes belong to :func:`request_db`'s transaction (the one exception is the
    single-statement client-credentials grant, ``TokenService.write_grant``)."""
    if "db_reader" not in g:
        g.db_reader = runtime().readers.acquire()
    reader: Connection = g.db_reader
    return reader


def release_request_db() -> None:
    """Give the request's database connections back now (a streamed response keeps the
    request's context, and so its session, until the last byte is sent)."""
    _close_db(None)


def _close_db(_exc: BaseException | None) -> None:
    reader: Connection | None = g.pop("db_reader", None)
    if reader is not None:
        runtime().readers.release(reader)
    db: Session | None = g.pop("db", None)
    # A session that never began a transaction holds no connection and nothing to roll back
    # (the bulk protocol endpoints only read on the reader): closing it would only cost CPU.
    if db is not None and (db.in_transaction() or db.identity_map or db.new or db.deleted):
        db.close()  # rolls back whatever a failed request left uncommitted
