"""The Alembic migrations produce exactly the schema the models describe, on each backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, event, inspect

from idp.db import make_engine
from idp.migrate import upgrade
from idp.models import Base


def test_models_and_migrations_agree(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_an_upgrade_stopped_midway_leaves_nothing_behind_on_sqlite(tmp_path: Path) -> None:
    """Ctrl-C during `idp db upgrade` (or the first `idp serve`) on the embedded SQLite
    database: every CREATE/ALTER had been committed on its own, so the tables made so far
    stayed without their revision in alembic_version, and every later upgrade failed with
    "table ... already exists". Now the upgrade is one transaction: all or nothing."""
    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    statements = 0

    def stop_midway(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        nonlocal statements
        if statement.lstrip().upper().startswith(("CREATE TABLE", "ALTER TABLE")):
            statements += 1
            if statements == 12:  # some migrations in, inside a later one
                raise KeyboardInterrupt

    event.listen(Engine, "before_cursor_execute", stop_midway)
    try:
        with pytest.raises(KeyboardInterrupt):
            upgrade(url)
    finally:
        event.remove(Engine, "before_cursor_execute", stop_midway)
    assert statements == 12
    engine = make_engine(url)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == []
    engine.dispose()
    upgrade(url)  # and the next upgrade goes through
    engine = make_engine(url)
    with engine.connect() as conn:
        assert "users" in inspect(conn).get_table_names()
    engine.dispose()
