"""Schema migrations with Alembic (scripts in migrations/)."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from alembic import command
from alembic.config import Config

from idp.db import normalize_url
from idp.settings import PROJECT_ROOT


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    url = normalize_url(database_url).render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (creating the SQLite file's folder if needed)."""
    url = normalize_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        _create_private_file(Path(url.database))
    command.upgrade(alembic_config(database_url), revision)


def _create_private_file(path: Path) -> None:
    """Create a new SQLite file readable by its owner only, as the secret key beside it: it
    holds password hashes and TOTP secrets, and SQLite gives its -wal and -shm files the same
    mode (left to SQLite, it was 0644: any local user could copy the hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):  # an existing database keeps the mode it has
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
