"""Browser sign-in over HTTP (Flask test client), on SQLite and PostgreSQL with real Redis."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.events import EventTag
from idp.models import Device, UserSession
from idp.runtime import Runtime
from tests.helpers import (
    PASSWORD,
    count,
    count_verifications,
    create_user,
    csrf_token,
    events,
    login_form,
    sign_in,
)

GENERIC = "Incorrect email or password."


def _body(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined, no-any-return]


def test_signing_in_shows_the_account_page(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime, organization="Acme")
    response = sign_in(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    page = client.get("/account")
    assert page.status_code == 200
    assert "<title>Your account · idp</title>" in _body(page)
    assert "Alice Liddell" in _body(page)
    assert "alice@example.com" in _body(page)
    assert "Acme" in _body(page)


def test_the_account_page_dates_the_sign_in_as_a_valid_html_time(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    before = datetime.now(UTC).replace(microsecond=0)
    sign_in(client)
    match = re.search(r'<time datetime="([^"]*)">', _body(client.get("/account")))
    assert match is not None
    # An HTML global date and time string (what machines and assistive technology read).
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", match.group(1))
    signed_in = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= signed_in <= datetime.now(UTC)


def test_email_is_matched_case_insensitively(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    assert sign_in(client, email="  ALICE@Example.COM ").status_code == 303


def test_session_cookie_is_httponly_lax_and_holds_only_a_random_token(
    client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    response = sign_in(client)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("idp_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 43
    assert user.id not in token and "alice" not in token
    with runtime.session_factory() as db:
        row = db.query(UserSession).one()
        assert token not in (row.token_hash, row.id)  # only a hash of the token is stored


def test_https_issuer_gives_host_prefixed_secure_cookies(
    tmp_path: object, database_url: str, redis_url: str
) -> None:
    from idp import create_app
    from tests.conftest import empty_tables, make_settings

    app = create_app(
        make_settings(
            tmp_path,
            database_url=database_url,
            redis_url=redis_url,
            issuer="https://id.example.com",
        )
    )  # type: ignore[arg-type]
    rt: Runtime = app.extensions["idp"]
    try:
        create_user(rt)
        client = app.test_client()
        html = _body(client.get("/login", base_url="https://id.example.com"))
        response = client.post(
            "/login",
            base_url="https://id.example.com",
            data={
                "csrf_token": csrf_token(html),
                "email": "alice@example.com",
                "password": PASSWORD,
            },
        )
        assert response.status_code == 303
        cookies = response.headers.getlist("Set-Cookie")
        session_cookie = next(c for c in cookies if c.startswith("__Host-idp_session="))
        assert "Secure" in session_cookie and "Domain" not in session_cookie
        assert any(c.startswith("__Host-idp_csrf=") and "Secure" in c for c in cookies)
        assert "max-age=31536000" in response.headers["Strict-Transport-Security"]
    finally:
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()


def test_wrong_password_and_unknown_email_are_indistinguishable(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    wrong = sign_in(client, password="not the right password")
    unknown = sign_in(client, email="nobody@example.com", password="not the right password")
    assert wrong.status_code == unknown.status_code == 200
    assert GENERIC in _body(wrong)
    strip = re.compile(r'value="[^"]*"')  # CSRF token and the echoed email differ by nature
    assert strip.sub("", _body(wrong)) == strip.sub("", _body(unknown))
    assert set(wrong.headers.keys()) == set(unknown.headers.keys())
    assert count(runtime, UserSession) == 0


def test_unknown_email_costs_one_password_verification_like_a_known_one(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_user(runtime)
    calls = count_verifications(runtime, monkeypatch)
    sign_in(client, password="not the right password")
    sign_in(client, email="nobody@example.com", password="not the right password")
    assert len(calls) == 2
    # Same argon2 parameters for the dummy as for real hashes: same cost.
    assert calls[0].split("$")[3] == calls[1].split("$")[3]


def test_failed_and_successful_sign_ins_are_recorded(client: FlaskClient, runtime: Runtime) -> None:
    user = create_user(runtime, organization="Acme")
    sign_in(client, password="not the right password")
    sign_in(client, email="nobody@example.com", password="whatever it is here")
    sign_in(client)
    failures = events(runtime, EventTag.LOGIN_FAILURE)
    assert [(e.user_id, e.details["reason"]) for e in failures] == [
        (user.id, "bad_password"),
        (None, "unknown_account"),
    ]
    (success,) = events(runtime, EventTag.LOGIN_SUCCESS)
    assert success.user_id == user.id
    assert success.organization_id is not None
    assert success.product == "account"
    assert success.ip == "127.0.0.1"
    assert success.device_id and success.session_id


def test_empty_fields_get_a_clear_message_and_change_nothing(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    token = login_form(client)
    response = client.post("/login", data={"csrf_token": token, "email": "", "password": ""})
    assert response.status_code == 400
    assert "Enter your email address and your password." in _body(response)
    assert events(runtime, EventTag.LOGIN_FAILURE) == []


def test_missing_or_foreign_csrf_token_is_refused(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    victim, attacker = app.test_client(), app.test_client()
    login_form(victim)
    no_token = victim.post("/login", data={"email": "alice@example.com", "password": PASSWORD})
    assert no_token.status_code == 400
    assert "This form has expired" in _body(no_token)
    # A token valid for the attacker's browser does not work with the victim's cookie.
    foreign = victim.post(
        "/login",
        data={
            "csrf_token": login_form(attacker),
            "email": "alice@example.com",
            "password": PASSWORD,
        },
    )
    assert foreign.status_code == 400
    assert count(runtime, UserSession) == 0
    assert events(runtime, EventTag.LOGIN_SUCCESS) == []


def test_logout_requires_csrf(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    sign_in(client)
    assert client.post("/logout").status_code == 400
    assert client.get("/account").status_code == 200  # still signed in


def test_logout_ends_the_session_and_its_cookie_cannot_be_replayed(
    client: FlaskClient, app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    response = sign_in(client)
    token = (
        next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("idp_session="))
        .split(";")[0]
        .split("=", 1)[1]
    )
    page = _body(client.get("/account"))
    out = client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert out.status_code == 303 and out.headers["Location"] == "/login?signed_out=1"
    assert "You have been signed out." in _body(client.get("/login?signed_out=1"))
    replay = app.test_client()
    replay.set_cookie("idp_session", token)
    again = replay.get("/account")
    assert again.status_code == 303 and again.headers["Location"].startswith("/login")
    with runtime.session_factory() as db:
        assert db.query(UserSession).one().end_reason == "logout"
    assert len(events(runtime, EventTag.LOGOUT)) == 1


def test_sign_in_regenerates_the_session_and_ignores_a_planted_cookie(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    create_user(runtime, "bob@example.com", first_name="Bob", last_name="Builder")
    client.set_cookie("idp_session", "attacker-chosen-session-token-value-0123456789")
    first = sign_in(client, email="bob@example.com")
    bob_token = client.get_cookie("idp_session")
    assert first.status_code == 303 and bob_token is not None
    assert bob_token.value != "attacker-chosen-session-token-value-0123456789"
    # Signing in again (as someone else) in the same browser gets a fresh session id too.
    sign_in_again = client.post(
        "/login",
        data={
            "csrf_token": csrf_token(_body(client.get("/account"))),
            "email": "alice@example.com",
            "password": PASSWORD,
        },
    )
    assert sign_in_again.status_code == 303
    alice_token = client.get_cookie("idp_session")
    assert alice_token is not None and alice_token.value != bob_token.value


def test_csrf_token_changes_when_signing_in(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    before = login_form(client)
    client.post(
        "/login", data={"csrf_token": before, "email": "alice@example.com", "password": PASSWORD}
    )
    after = csrf_token(_body(client.get("/account")))
    assert after != before
    # The pre-sign-in token no longer authorizes a form.
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400


def test_next_is_followed_only_within_this_site(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    assert sign_in(client, next_url="/account?tab=1").headers["Location"] == "/account?tab=1"
    for hostile in (
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "http:/evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
    ):
        client.delete_cookie("idp_session")
        response = sign_in(client, next_url=hostile)
        assert response.headers["Location"] == "/account", hostile


def test_account_page_requires_sign_in_and_comes_back_after(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    response = client.get("/account")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=/account"
    assert 'name="next" value="/account"' in _body(client.get(response.headers["Location"]))


def test_each_sign_in_records_a_session_and_reuses_the_device(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    ua = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
    client.environ_base.update({"HTTP_USER_AGENT": ua["User-Agent"]})
    sign_in(client)
    client.post("/logout", data={"csrf_token": csrf_token(_body(client.get("/account")))})
    sign_in(client)
    assert count(runtime, UserSession) == 2
    with runtime.session_factory() as db:
        device = db.query(Device).one()
        assert (device.browser, device.os) == ("Firefox 128", "Linux")
        assert device.first_ip == device.last_ip == "127.0.0.1"
        assert {s.device_id for s in db.query(UserSession)} == {device.id}
    # Another browser (no device cookie) is another device.
    other = client.application.test_client()
    sign_in(other)
    assert count(runtime, Device) == 2


def test_sessions_survive_a_store_flush(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    sign_in(client)
    runtime.store.delete_prefix()
    assert client.get("/account").status_code == 200  # rebuilt from the database
    assert runtime.store.client.keys(runtime.store.prefix + "session:*")


def test_security_headers_on_every_page(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    pages = [client.get("/login"), client.get("/nowhere")]
    sign_in(client)
    pages.append(client.get("/account"))
    for page in pages:
        h = page.headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["Cache-Control"] == "no-store"
        assert h["X-Frame-Options"] == "DENY"
    static = client.get("/static/idp.css")
    assert "no-store" not in static.headers["Cache-Control"]


def test_error_pages_never_show_internals(app: Flask, client: FlaskClient) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    response = client.get("/boom")
    assert response.status_code == 500
    assert "secret internal detail" not in _body(response)
    assert "Traceback" not in _body(response)
    assert "An unexpected error occurred" in _body(response)
    assert client.get("/logout").status_code == 405
    assert client.get("/nowhere").status_code == 404
