"""Whether a database has this release's migrations (Alembic's ``alembic_version``): what
``/readyz`` reports and what the ``idp`` commands check before touching the tables."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sqlalchemy import Connection, inspect, text

from idp.db import normalize_url


@cache
def _known_revisions() -> tuple[str, frozenset[str]]:
    """This release's newest migration and every migration it ships (read once)."""
    from alembic.script import ScriptDirectory

    from idp.settings import PROJECT_ROOT

    scripts = ScriptDirectory(str(PROJECT_ROOT / "migrations"))
    head = scripts.get_current_head()
    assert head is not None, "the migrations form one line"
    return head, frozenset(script.revision for script in scripts.walk_revisions())


def schema_state(conn: Connection) -> str:
    """``ok`` when the database has this release's migrations: at its newest one, or at one
    this release does not know (a newer release migrated it; migrations only expand, so this
    release still works on it: README "Upgrades with nodes still running"). ``outdated``
    when ``idp db upgrade`` has not been run for this release: its code would fail on the
    missing tables and columns, so the node must not take traffic yet."""
    head, known = _known_revisions()
    if not inspect(conn).has_table("alembic_version"):  # never migrated
        return "outdated"
    current = set(conn.scalars(text("SELECT version_num FROM alembic_version")))
    if head in current or current - known:
        return "ok"
    return "outdated"


def missing_sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist (connecting would create it empty),
    else None (it exists, or the database is not a SQLite file)."""
    url = normalize_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database)
    return None if path.exists() else path
