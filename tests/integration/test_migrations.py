"""The Alembic migrations produce exactly the schema the models describe, on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, event, inspect, select, text
from sqlalchemy.orm import Session

from idp.accounts import normalize_email
from idp.db import make_engine
from idp.migrate import upgrade
from idp.models import Base, User
from idp.schema import schema_state
from tests import services


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


def test_upgrading_a_sqlite_database_keeps_the_rows_that_refer_to_accounts(
    tmp_path: Path,
) -> None:
    """The migrations that add a column to `users` re-create the table on SQLite (copy, DROP,
    rename); with foreign keys on, the DROP deleted, ON DELETE CASCADE, every membership (and
    device, session, refresh token, consent, SSO identity, recovery code) of an embedded
    database that `idp serve` or `idp db upgrade` brought past 0010: organizations lost all
    their members."""
    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    upgrade(url, "0006")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (id, email, email_normalized, email_verified, first_name,"
            " last_name, password_hash, created_at, lockout_threshold, alert_on_success,"
            " alert_on_failure) VALUES ('u1', 'a@example.com', 'a@example.com', 1, 'A', 'B',"
            " 'x', '2026-01-01', 10, 'new_device', 1)"
        ))
        conn.execute(text(
            "INSERT INTO organizations (id, name, created_at) VALUES ('o1', 'Acme', '2026-01-01')"
        ))
        conn.execute(text(
            "INSERT INTO memberships (id, user_id, organization_id, role, created_at)"
            " VALUES ('m1', 'u1', 'o1', 'owner', '2026-01-01')"
        ))
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT user_id, role FROM memberships")).all() == [
            ("u1", "owner")
        ]
        assert conn.execute(text("SELECT email FROM users")).scalars().all() == ["a@example.com"]
    engine.dispose()


def test_a_dangling_reference_from_before_does_not_block_the_upgrade(tmp_path: Path) -> None:
    """The check that a migration broke no foreign key compares with what was there before:
    an old row that already pointed nowhere is not the migration's doing."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    upgrade(url, "0006")
    raw = sqlite3.connect(tmp_path / "idp.sqlite3")  # foreign keys off: as an old tool wrote
    raw.execute(
        "INSERT INTO organizations (id, name, created_at) VALUES ('o1', 'Acme', '2026-01-01')"
    )
    raw.execute(
        "INSERT INTO memberships (id, user_id, organization_id, role, created_at)"
        " VALUES ('m1', 'gone', 'o1', 'member', '2026-01-01')"
    )
    raw.commit()
    raw.close()
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert schema_state(conn) == "ok"  # at this release's newest migration
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, for tests that start from an older revision."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'idp.sqlite3'}"
        return
    name = f"idp_test_{services.RUN_ID}_nfc"
    yield services.create_postgres_database(name)
    services.drop_postgres_database(name)


def test_an_address_stored_decomposed_by_an_earlier_release_is_found_after_the_upgrade(
    empty_database: str,
) -> None:
    """Addresses are compared in NFC since 0015; one an earlier release stored with "o" +
    combining diaeresis would otherwise never be found again (its owner locked out). Where the
    NFC form is another account's address already, the row is left for the operator."""
    decomposed, composed = "jo\u0308rg@example.de", "j\u00f6rg@example.de"
    upgrade(empty_database, "0014")
    engine = make_engine(empty_database)
    with engine.begin() as conn:
        for user_id, stored in [
            ("u1", decomposed),
            ("u2", "ma\u0308x@example.de"),
            ("u3", "m\u00e4x@example.de"),  # the NFC twin of u2, made by sign-up since
        ]:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, email_normalized, email_verified, first_name,"
                    " last_name, password_hash, created_at, lockout_threshold, alert_on_success,"
                    " alert_on_failure, lockout_epoch) VALUES (:id, :email, :email, true, 'A',"
                    " 'B', 'x', '2026-01-01', 10, 'new_device', true, 0)"
                ),
                {"id": user_id, "email": stored},
            )
    engine.dispose()
    upgrade(empty_database)
    engine = make_engine(empty_database)
    with Session(engine) as db:
        # how sign-in, password reset and sign-up look an address up
        found = db.scalar(select(User).where(User.email_normalized == normalize_email(decomposed)))
        assert found is not None and found.id == "u1"
        assert db.get(User, "u1").email_normalized == composed  # type: ignore[union-attr]
        assert db.get(User, "u2").email_normalized == "ma\u0308x@example.de"  # type: ignore[union-attr]
        assert schema_state(db.connection()) == "ok"
    engine.dispose()
