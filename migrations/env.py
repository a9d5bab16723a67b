"""Alembic environment: runs migrations against the URL idp.migrate puts in the config."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, engine_from_config, event, pool
from sqlalchemy.engine import make_url

import idp.models
from idp.db import _sqlite_pragmas, connect_timeout_args

config = context.config
target_metadata = idp.models.Base.metadata


def run_migrations_online() -> None:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
        connect_args=connect_timeout_args(make_url(config.get_main_option("sqlalchemy.url"))),
    )
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        _transactional_ddl_on_sqlite(engine)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
            transactional_ddl=True,  # all migrations or none (on SQLite too: below)
        )
        with context.begin_transaction():
            before = _dangling_references(connection) if sqlite else set()
            context.run_migrations()
            if sqlite:
                _check_foreign_keys(connection, before)
    engine.dispose()


def _transactional_ddl_on_sqlite(engine: Engine) -> None:
    """SQLite can roll back DDL, but Python's sqlite3 module begins a transaction only before
    INSERT/UPDATE/DELETE, so every CREATE, ALTER and DROP was committed on its own: an upgrade
    stopped midway (Ctrl-C at the first `idp serve`) left tables without their revision in
    alembic_version, and every later upgrade failed ("table events already exists"). Here
    SQLAlchemy's BEGIN is sent as is (SQLAlchemy's documented pysqlite recipe), so the whole
    upgrade is one transaction."""

    def connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_connection, record)  # journal mode: outside any transaction
        dbapi_connection.isolation_level = None  # sqlite3 no longer BEGINs or COMMITs itself
        # Batch migrations re-create a table (copy, DROP, rename): with foreign keys on, the
        # DROP of `users` deleted, ON DELETE CASCADE, every membership, device, session,
        # refresh token, consent, SSO identity and recovery code. Off during the upgrade, as
        # Alembic's batch documentation asks; _check_foreign_keys verifies them at the end.
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")

    def begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    event.listen(engine, "connect", connect)
    event.listen(engine, "begin", begin)


def _dangling_references(connection: Connection) -> set[tuple[Any, ...]]:
    return {tuple(row) for row in connection.exec_driver_sql("PRAGMA foreign_key_check")}


def _check_foreign_keys(connection: Connection, before: set[tuple[Any, ...]]) -> None:
    """Refuse (rolling the whole upgrade back) a migration that left a dangling reference
    (one that was there before is not the migration's doing)."""
    new = sorted(_dangling_references(connection) - before, key=repr)
    if new:
        raise RuntimeError(f"foreign keys broken by the migration: {new[:3]}")


run_migrations_online()
