"""The two ways to run idp: embedded ``idp serve`` and ``gunicorn 'idp:create_app()'``."""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import services
from tests.helpers import PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _sign_in(base: str, email: str = "alice@example.com") -> requests.Session:
    browser = requests.Session()
    form = browser.get(base + "/login", timeout=10)
    token = _CSRF.search(form.text).group(1)  # type: ignore[union-attr]
    response = browser.post(
        base + "/login",
        timeout=10,
        allow_redirects=False,
        data={"csrf_token": token, "email": email, "password": PASSWORD},
    )
    assert response.status_code == 303, response.text
    return browser


def test_embedded_serve_signs_in_on_sqlite_and_in_process_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = services.free_port()
    env = services.idp_env(
        data_dir=str(data_dir),
        issuer=f"http://127.0.0.1:{port}",
        argon2_memory_kib="1024",
        argon2_time_cost="1",
    )
    # No `db upgrade` first: serve upgrades the embedded database itself.
    with services.running_server(
        [sys.executable, "-m", "idp", "serve", "--port", str(port)],
        env,
        port,
        tmp_path / "serve.log",
    ) as base:
        assert requests.get(base + "/readyz", timeout=5).json()["status"] == "ready"
        made = services.run_idp(
            "user",
            "create",
            "alice@example.com",
            "--password-stdin",
            "--first-name",
            "Alice",
            env=env,
            stdin=PASSWORD + "\n",
        )
        assert made.returncode == 0, made.stderr
        browser = _sign_in(base)
        assert "alice@example.com" in browser.get(base + "/account", timeout=5).text
        # The database holds password hashes: owner only, like the key (it was 0644), and
        # SQLite gives its write-ahead log the same mode.
        for name in ("idp.sqlite3", "idp.sqlite3-wal"):
            assert stat.S_IMODE(os.stat(data_dir / name).st_mode) == 0o600, name
    assert (data_dir / "idp.sqlite3").exists()
    assert stat.S_IMODE(os.stat(data_dir / "secret_key").st_mode) == 0o600
    log = (tmp_path / "serve.log").read_text()
    assert "in-process store, correct for one process only" in log
    assert PASSWORD not in log


def test_embedded_serve_stopped_mid_delivery_finishes_that_mail(tmp_path: Path) -> None:
    """SIGTERM while `idp serve`'s outbox thread is in the middle of an SMTP exchange: the
    delivery completes and its mail is marked sent before the process ends. (The thread used
    to die with the process: the mail stayed leased and, the server having taken it, went
    out a second time after the lease.)"""
    import asyncio
    import threading
    from typing import Any

    from sqlalchemy import create_engine, select

    from idp.mail.queue import MAIL
    from idp.models import OutboxItem
    from tests.mailserver import MailServer

    in_data = threading.Event()

    class SlowMailServer(MailServer):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            in_data.set()
            await asyncio.sleep(3)  # a slow server: the stop arrives now
            return await super().handle_DATA(server, session, envelope)

    smtp = SlowMailServer(port=services.free_port())
    smtp.start()
    data_dir = tmp_path / "var"
    port = services.free_port()
    env = services.idp_env(data_dir=str(data_dir), issuer=f"http://127.0.0.1:{port}",
                           smtp_url=smtp.url, argon2_memory_kib="1024", argon2_time_cost="1")
    try:
        with services.running_server(
            [sys.executable, "-m", "idp", "serve", "--port", str(port)],
            env, port, tmp_path / "serve.log",
        ):
            made = services.run_idp("user", "create", "bob@example.com", "--password-stdin",
                                    "--unverified", env=env, stdin=PASSWORD + "\n")
            assert made.returncode == 0, made.stderr
            assert in_data.wait(30), "the mail never reached DATA"
        # running_server has sent SIGTERM and waited for the process to end
    finally:
        smtp.stop()
    engine = create_engine(f"sqlite:///{data_dir / 'idp.sqlite3'}")
    with engine.connect() as conn:
        [(done_at, leased_until)] = conn.execute(
            select(OutboxItem.done_at, OutboxItem.leased_until).where(OutboxItem.kind == MAIL)
        ).all()
    engine.dispose()
    assert [m["To"] for m in smtp.messages] == ["bob@example.com"]
    assert done_at is not None and leased_until is None


@pytest.fixture
def gunicorn_on_postgres(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    services.check_redis()
    name = f"idp_gunicorn_{services.RUN_ID}"
    url = services.create_postgres_database(name)
    port = services.free_port()
    prefix = f"idptest:{services.RUN_ID}:gunicorn:"
    env = services.idp_env(
        database_url=url,
        redis_url=services.REDIS_URL,
        redis_prefix=prefix,
        secret_key=secrets.token_urlsafe(48),
        data_dir=str(tmp_path / "var"),
        issuer=f"http://127.0.0.1:{port}",
        argon2_memory_kib="1024",
        argon2_time_cost="1",
    )
    try:
        assert services.run_idp("db", "upgrade", env=env).returncode == 0
        assert (
            services.run_idp(
                "user",
                "create",
                "alice@example.com",
                "--password-stdin",
                env=env,
                stdin=PASSWORD + "\n",
            ).returncode
            == 0
        )
        with services.running_server(
            services.gunicorn_args(port, workers=3), env, port, tmp_path / "gunicorn.log"
        ) as base:
            yield base, env
    finally:
        import redis

        client = redis.Redis.from_url(services.REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        services.drop_postgres_database(name)


def test_gunicorn_workers_share_sessions_and_their_ending(
    gunicorn_on_postgres: tuple[str, dict[str, str]],
) -> None:
    base, _ = gunicorn_on_postgres
    browser = _sign_in(base)
    stolen_cookie = browser.cookies.get("idp_session")
    # Many requests land on different workers: every one of them knows the session.
    for _ in range(12):
        assert browser.get(base + "/account", timeout=5, allow_redirects=False).status_code == 200
    page = browser.get(base + "/account", timeout=5).text
    out = browser.post(
        base + "/logout",
        timeout=5,
        allow_redirects=False,
        data={"csrf_token": _CSRF.search(page).group(1)},
    )  # type: ignore[union-attr]
    assert out.status_code == 303
    replay = requests.Session()
    replay.cookies.set("idp_session", stolen_cookie)
    for _ in range(12):  # ended for every worker at once
        assert replay.get(base + "/account", timeout=5, allow_redirects=False).status_code == 303


def test_embedded_serve_writes_nothing_in_the_home_directory(tmp_path: Path) -> None:
    """gunicorn's control socket went to ~/.gunicorn/gunicorn.ctl: two `idp serve` on one
    machine (two data dirs, two ports) shared that path, and stopping either deleted the
    socket of the other."""
    home = tmp_path / "home"
    home.mkdir()
    port = services.free_port()
    env = {**services.idp_env(data_dir=str(tmp_path / "var"),
                              issuer=f"http://127.0.0.1:{port}"), "HOME": str(home)}
    with services.running_server(
        [sys.executable, "-m", "idp", "serve", "--port", str(port)],
        env,
        port,
        tmp_path / "serve.log",
    ) as base:
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        assert list(home.iterdir()) == []
    log = (tmp_path / "serve.log").read_text()
    assert "Control socket" not in log
    assert "IDP_ISSUER is" not in log  # the issuer names the port served


def test_embedded_serve_on_another_port_than_the_issuers_says_so(tmp_path: Path) -> None:
    """`idp serve --port 8080` (scripts/run suggests it) with the default issuer
    http://127.0.0.1:8000 signed people in, while discovery, every endpoint relying services
    use and mailed links pointed at port 8000, without a word."""
    port = services.free_port()
    env = services.idp_env(data_dir=str(tmp_path / "var"))  # the default issuer
    with services.running_server(
        [sys.executable, "-m", "idp", "serve", "--port", str(port)],
        env,
        port,
        tmp_path / "serve.log",
    ) as base:
        discovery = requests.get(base + "/.well-known/openid-configuration", timeout=5).json()
        assert discovery["issuer"] == "http://127.0.0.1:8000"  # the setting, as the contract says
    assert (
        f"idp serve: IDP_ISSUER is http://127.0.0.1:8000 but this server listens on port {port}"
        f": OpenID Connect discovery, tokens and mailed links point at port 8000 (set "
        f"IDP_ISSUER=http://127.0.0.1:{port} unless a proxy there forwards here)"
    ) in (tmp_path / "serve.log").read_text()
