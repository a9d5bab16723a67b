"""Signing in with a second factor: password, then a code; the session starts only after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
from flask.testing import FlaskClient

from idp.events import EventTag
from idp.models import UserSession
from idp.runtime import Runtime
from tests.helpers import count, create_user, csrf_token, events, sign_in
from tests.integration.test_two_factor import _enable


def _password_step(client: FlaskClient, next_url: str | None = None) -> str:
    response = sign_in(client, next_url=next_url)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login/code")
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'autocomplete="one-time-code"' in html and 'name="code"' in html
    return html


def test_code_after_password_signs_in_with_mfa(client: FlaskClient, runtime: Runtime) -> None:
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    html = _password_step(client, next_url="/account?x=1")
    assert count(runtime, UserSession) == 0  # no session before the second factor
    assert client.get("/account").status_code == 303
    done = client.post("/login/code", data={"csrf_token": csrf_token(html), "next": "/account?x=1",
                                            "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 303 and done.headers["Location"] == "/account?x=1"
    assert client.get("/account").status_code == 200
    with runtime.session_factory() as db:
        assert db.query(UserSession).one().amr == "pwd otp mfa"
    (success,) = events(runtime, EventTag.LOGIN_SUCCESS)
    assert success.details["amr"] == ["pwd", "otp", "mfa"]


def test_wrong_or_replayed_code_does_not_sign_in(client: FlaskClient, runtime: Runtime) -> None:
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    html = _password_step(client)
    wrong = client.post("/login/code", data={"csrf_token": csrf_token(html), "code": "000000"})
    assert wrong.status_code == 400
    assert "That code is not valid" in wrong.get_data(as_text=True)
    code = pyotp.TOTP(secret).now()
    ok = client.post("/login/code", data={"csrf_token": csrf_token(html), "code": code})
    assert ok.status_code == 303
    other = client.application.test_client()
    html = _password_step(other)
    replay = other.post("/login/code", data={"csrf_token": csrf_token(html), "code": code})
    assert replay.status_code == 400
    assert len(events(runtime, EventTag.SECOND_FACTOR_FAILURE)) == 2


def test_recovery_code_signs_in_once(client: FlaskClient, runtime: Runtime) -> None:
    user = create_user(runtime)
    _, codes = _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    html = _password_step(client)
    assert client.post("/login/code", data={"csrf_token": csrf_token(html),
                                            "code": codes[0]}).status_code == 303
    other = client.application.test_client()
    html = _password_step(other)
    assert other.post("/login/code", data={"csrf_token": csrf_token(html),
                                           "code": codes[0]}).status_code == 400


def test_code_attempts_are_rate_limited(client: FlaskClient, runtime: Runtime) -> None:
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    html = _password_step(client)
    limit = runtime.settings.second_factor_attempts_per_minute
    for _ in range(limit):
        client.post("/login/code", data={"csrf_token": csrf_token(html), "code": "000000"})
    limited = client.post("/login/code", data={"csrf_token": csrf_token(html),
                                               "code": pyotp.TOTP(secret).now()})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert count(runtime, UserSession) == 0


def test_code_page_without_a_pending_sign_in_goes_back_to_login(client: FlaskClient) -> None:
    response = client.get("/login/code")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    token = csrf_token(client.get("/login").get_data(as_text=True))
    forged = client.post("/login/code", data={"csrf_token": token, "code": "123456"})
    assert forged.status_code == 303
