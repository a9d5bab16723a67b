"""/healthz and /readyz."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp import create_app
from idp.runtime import Runtime
from tests.conftest import empty_tables, make_settings
from tests.services import free_port


def test_health_and_readiness_when_everything_answers(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "database": "ok", "schema": "ok",
                          "store": "ok"}


def test_not_ready_when_the_store_is_unreachable(tmp_path: Path, database_url: str) -> None:
    app = create_app(
        make_settings(
            tmp_path, database_url=database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0"
        )
    )
    rt: Runtime = app.extensions["idp"]
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.json == {
            "status": "not ready",
            "database": "ok",
            "schema": "ok",
            "store": "unreachable",
        }
        # A page that needs the store answers 503 with a clear message, not a stack trace.
        browser = app.test_client()
        browser.set_cookie("idp_session", "a-session-token")
        login = browser.get("/account")
        assert login.status_code == 503
        assert "temporarily unavailable" in login.get_data(as_text=True)
        assert app.test_client().get("/healthz").status_code == 200
    finally:  # the signing keys this app made (with its own secret key) go with it
        empty_tables(rt)
        rt.close()


def test_not_ready_when_the_database_is_unreachable(tmp_path: Path, redis_url: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app(make_settings(tmp_path, database_url=url, redis_url=redis_url))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "not ready", "database": "unreachable",
                             "schema": "unknown", "store": "ok"}


def test_not_ready_until_the_database_has_this_releases_migrations(tmp_path: Path,
                                                                   redis_url: str) -> None:
    """A node of a new release started before `idp db upgrade` must not take traffic (its code
    needs the new tables and columns); an old node on a database a newer release migrated
    stays ready (migrations only expand: README, upgrades with nodes still running)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from idp.migrate import upgrade
    from idp.settings import PROJECT_ROOT

    scripts = ScriptDirectory(str(PROJECT_ROOT / "migrations"))
    head = scripts.get_revision(scripts.get_current_head())
    assert head is not None and isinstance(head.down_revision, str)
    url = f"sqlite:///{tmp_path / 'upgrading.sqlite3'}"
    upgrade(url, head.down_revision)  # the previous release's schema
    app = create_app(make_settings(tmp_path, database_url=url, redis_url=redis_url))
    rt: Runtime = app.extensions["idp"]
    try:
        behind = app.test_client().get("/readyz")
        assert behind.status_code == 503
        assert behind.json == {"status": "not ready", "database": "ok", "schema": "outdated",
                               "store": "ok"}
        upgrade(url)
        assert app.test_client().get("/readyz").status_code == 200
        with rt.engine.begin() as conn:  # a newer release's migration ran: still ready
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed0001'"))
        assert app.test_client().get("/readyz").json["schema"] == "ok"
        with rt.engine.begin() as conn:  # never migrated at all
            conn.execute(text("DROP TABLE alembic_version"))
        assert app.test_client().get("/readyz").json["schema"] == "outdated"
    finally:
        rt.store.delete_prefix()
        rt.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_no_free_database_connection_is_a_clean_503(app: Flask, runtime: Runtime) -> None:
    """Every pooled connection busy (a slow database under load) until the pool's timeout:
    the request is refused as "temporarily unavailable", like a database that is down, not
    as an unexpected error (500 and a traceback in the logs)."""
    from tests.helpers import create_user, sign_in

    create_user(runtime)
    pool = runtime.engine.pool
    held = [runtime.engine.connect() for _ in range(pool.size() + pool._max_overflow)]  # type: ignore[attr-defined]
    timeout, pool._timeout = pool._timeout, 0.2  # type: ignore[attr-defined]
    try:
        browser = app.test_client()
        browser.get("/login")
        answer = sign_in(browser)
        assert answer.status_code == 503
        assert "temporarily unavailable" in answer.get_data(as_text=True)
        token = app.test_client().post("/token", data={"grant_type": "client_credentials"},
                                       headers={"Authorization": "Basic eDp5"})
        assert token.status_code == 503
        assert token.json == {"error": "temporarily_unavailable",
                              "error_description": token.json["error_description"]}
    finally:
        pool._timeout = timeout  # type: ignore[attr-defined]
        for connection in held:
            connection.close()


def test_a_read_only_redis_is_a_clean_503(tmp_path: Path, database_url: str) -> None:
    """During a managed Redis's failover its single endpoint can answer as a replica for a
    moment (writes refused with READONLY): sign-in fails closed with the "temporarily
    unavailable" page, as when Redis is unreachable, not with a 500."""
    import redis

    from tests.faults import PrivateRedis, private_redis
    from tests.helpers import create_user, sign_in

    with private_redis() as primary:
        replica = PrivateRedis(free_port(), tmp_path, replica_of=primary.port)
        replica.start()
        try:
            client = redis.Redis(port=replica.port)
            assert client.info("replication")["role"] == "slave"
            client.close()
            app = create_app(make_settings(tmp_path, database_url=database_url,
                                           redis_url=replica.url))
            rt: Runtime = app.extensions["idp"]
            try:
                create_user(rt)
                browser = app.test_client()
                answer = sign_in(browser)
                assert answer.status_code == 503
                assert "temporarily unavailable" in answer.get_data(as_text=True)
            finally:
                empty_tables(rt)
                rt.close()
        finally:
            replica.stop()
