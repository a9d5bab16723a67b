"""Fixtures: ``app``, ``client`` and ``runtime`` on each database backend, with real Redis.

The ``backend`` fixture runs every test that uses ``app`` twice: on SQLite and on PostgreSQL.
Each test gets its own Redis key prefix; tables are emptied after each test.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete

from idp import create_app
from idp.migrate import upgrade
from idp.models import Base
from idp.runtime import Runtime
from idp.settings import Settings, load_settings
from tests import services

_counter = itertools.count()

# Fast argon2 parameters for tests that are not about hashing cost; tests about parameters
# set their own.
FAST_HASHING = {"argon2_memory_kib": 1024, "argon2_time_cost": 1, "argon2_parallelism": 1}


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    name = f"idp_test_{services.RUN_ID}"
    url = services.create_postgres_database(name)
    upgrade(url)
    yield url
    services.drop_postgres_database(name)


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'idp.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    services.check_redis()
    return services.REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_database" if request.param == "sqlite" else "postgres_database"
    url: str = request.getfixturevalue(name)
    return url


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / "var"),
        "secret_key": secrets.token_urlsafe(48),
        "redis_prefix": f"idptest:{services.RUN_ID}:{next(_counter)}:",
        **FAST_HASHING,
    }
    values.update(overrides)
    return load_settings(overrides=values, environ={})


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url, redis_url=redis_url)


def empty_tables(runtime: Runtime) -> None:
    with runtime.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


@contextmanager
def running_app(settings: Settings) -> Iterator[Flask]:
    """The application for these settings; its tables and store keys are emptied after."""
    application = create_app(settings)
    application.config["TESTING"] = True
    rt: Runtime = application.extensions["idp"]
    try:
        yield application
    finally:
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    with running_app(settings) as application:
        yield application


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    rt: Runtime = app.extensions["idp"]
    return rt


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
