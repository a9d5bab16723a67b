"""Ending a session is immediate across server processes: two separate gunicorn servers (two
ports, one PostgreSQL database, one Redis prefix, one issuer), as behind a load balancer.

A browser signs in to an application through server A; the same user, on server B's account
access page, signs that session out; A's very next request with the ended cookie lands on
/login, and the access token it issued is inactive at A's introspection endpoint.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from idp.runtime import Runtime
from idp.settings import load_settings
from tests import services
from tests.account_pages import read_devices
from tests.helpers import PASSWORD, csrf_token
from tests.integration.test_account_access import (
    FIREFOX_WINDOWS,
    SAFARI_IPHONE,
    live_browser,
    live_session_id,
    open_account,
)
from tests.oidc import RelyingParty, register_client


@dataclass(frozen=True)
class TwoServers:
    a: str
    b: str
    runtime: Runtime  # in-process access to the same database and store, for setup and checks


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[TwoServers]:
    services.check_redis()
    name = f"idp_two_servers_{services.RUN_ID}"
    url = services.create_postgres_database(name)
    prefix = f"idptest:{services.RUN_ID}:two-servers:"
    port_a, port_b = services.free_port(), services.free_port()
    settings = {
        "database_url": url,
        "redis_url": services.REDIS_URL,
        "redis_prefix": prefix,
        "secret_key": secrets.token_urlsafe(48),
        "data_dir": str(tmp_path / "var"),
        "issuer": f"http://127.0.0.1:{port_a}",  # one identity provider, two processes
        "argon2_memory_kib": "1024",
        "argon2_time_cost": "1",
    }
    env = services.idp_env(**settings)
    runtime: Runtime | None = None
    try:
        assert services.run_idp("db", "upgrade", env=env).returncode == 0
        created = services.run_idp(
            "user",
            "create",
            "alice@example.com",
            "--password-stdin",
            env=env,
            stdin=PASSWORD + "\n",
        )
        assert created.returncode == 0, created.stderr
        runtime = Runtime(load_settings(overrides=settings, environ={}))
        with (
            services.running_server(
                services.gunicorn_args(port_a, workers=1), env, port_a, tmp_path / "a.log"
            ) as a,
            services.running_server(
                services.gunicorn_args(port_b, workers=1), env, port_b, tmp_path / "b.log"
            ) as b,
        ):
            yield TwoServers(a, b, runtime)
    finally:
        if runtime is not None:
            runtime.close()
        client = redis.Redis.from_url(services.REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
        services.drop_postgres_database(name)


def test_a_session_ended_on_server_b_stops_at_its_next_request_on_server_a(
    two_servers: TwoServers,
) -> None:
    a, b, rt = two_servers.a, two_servers.b, two_servers.runtime
    shop = RelyingParty(a, register_client(rt, "Shop"))
    laptop = live_browser(a, FIREFOX_WINDOWS)
    tokens, _ = shop.sign_in(laptop)
    assert laptop.http.get(a + "/account", allow_redirects=False, timeout=10).status_code == 200
    assert shop.introspect(tokens["access_token"]).json()["active"] is True
    phone = live_browser(b, SAFARI_IPHONE)
    open_account(phone)

    # Server B lists the session started on server A, with its application.
    listing = phone.http.get(b + "/account/sessions", timeout=10)
    [this_device, laptop_device] = read_devices(listing.text)
    assert this_device.current and not laptop_device.current
    [laptop_session] = laptop_device.sessions
    assert laptop_session.session_id == live_session_id(rt, laptop)
    assert laptop_session.applications == "Shop"

    end_url = f"{b}/account/sessions/{laptop_session.session_id}/end"
    confirm = phone.http.get(end_url, timeout=10)
    assert "Sign out this device?" in confirm.text
    done = phone.http.post(
        end_url, data={"csrf_token": csrf_token(confirm.text)}, allow_redirects=False, timeout=10
    )
    assert done.status_code == 303

    # The very next request to server A with the ended cookie lands on the sign-in page.
    after = laptop.http.get(a + "/account", timeout=10)
    assert after.history and after.history[0].status_code == 303
    assert after.url.startswith(a + "/login")
    assert 'name="password"' in after.text
    assert shop.introspect(tokens["access_token"]).json() == {"active": False}
    refreshed = shop.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    # Server B's own browser is untouched.
    assert phone.http.get(b + "/account", allow_redirects=False, timeout=10).status_code == 200
