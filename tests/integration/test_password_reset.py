"""Forgotten password: the reset link is mailed over real SMTP, works once, expires, is
superseded by a newer one and by a sign-in or a password change, needs the second factor when
the account has one, and its success signs every session out, clears the lockout and mails a
notice. The request page answers the same for known and unknown addresses and is rate limited.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from idp.events import EventTag
from idp.models import OneTimeToken, User, utcnow
from idp.runtime import Runtime
from idp.worker import build_worker
from tests.conftest import make_settings, running_app
from tests.helpers import (
    PASSWORD,
    create_user,
    csrf_token,
    events,
    request_email_change,
    sign_in,
)
from tests.integration.test_two_factor import _enable
from tests.mailserver import MailServer
from tests.oidc import hidden_fields

ALICE = "alice@example.com"
NEW_PASSWORD = "a brand new passphrase for her"
_LINK = re.compile(r"(http://\S+/password/reset/[A-Za-z0-9_-]+)")


@contextmanager
def _app(tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer,
         **overrides: Any) -> Iterator[Flask]:
    values: dict[str, Any] = {**{}, **overrides}
    with running_app(make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                                   smtp_url=smtp.url, **values)) as app:
        yield app


@pytest.fixture
def mail_app(tmp_path: Path, database_url: str, redis_url: str,
            smtp: MailServer) -> Iterator[Flask]:
    with _app(tmp_path, database_url, redis_url, smtp) as app:
        yield app


@pytest.fixture
def rt(mail_app: Flask) -> Runtime:
    runtime: Runtime = mail_app.extensions["idp"]
    return runtime


@pytest.fixture
def browser(mail_app: Flask) -> FlaskClient:
    return mail_app.test_client()


def _text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def request_reset(client: FlaskClient, email: str = ALICE) -> TestResponse:
    page = client.get("/password/forgot")
    assert page.status_code == 200
    return client.post("/password/forgot", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "email": email})


def _deliver(rt: Runtime) -> None:
    """Run the worker until it is idle: a request becomes a link and a queued mail in one
    pass, the mail is sent in the next."""
    worker = build_worker(rt)
    while worker.run_once():
        pass


def reset_links(rt: Runtime, smtp: MailServer, email: str = ALICE) -> list[str]:
    """Every reset link mailed to ``email`` so far, oldest first (after a worker pass)."""
    _deliver(rt)
    return [m.group(1) for message in smtp.to(email)
            if str(message["Subject"]) == "Reset your password"
            for m in [_LINK.search(_text(message))] if m]


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def use_link(client: FlaskClient, url: str, password: str = NEW_PASSWORD,
             again: str | None = None, **form: str) -> TestResponse:
    page = client.get(_path(url))
    if page.status_code != 200:
        return page
    return client.post(_path(url), data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "new_password": password,
        "new_password_again": password if again is None else again, **form})


def _user(rt: Runtime, email: str = ALICE) -> User:
    with rt.session_factory() as db:
        user = db.scalar(select(User).where(User.email_normalized == email))
        assert user is not None
        return user


def _invalid(response: TestResponse) -> bool:
    return response.status_code == 400 and "invalid, has already been used, or has expired" in \
        response.get_data(as_text=True)


def test_a_reset_cancels_an_email_change_waiting_for_its_link(
    mail_app: Flask, rt: Runtime, smtp: MailServer
) -> None:
    """Someone in the account asks for their own address; the owner, warned by the notice,
    resets the password: the intruder's link must no longer take the account."""
    create_user(rt)
    intruder = mail_app.test_client()
    assert sign_in(intruder).status_code == 303
    link = request_email_change(intruder, "mallory@example.net")
    _deliver(rt)
    [notice] = [m for m in smtp.to(ALICE) if "change of your email" in str(m["Subject"])]
    assert "Changing your password also cancels this change of address." in _text(notice)
    owner = mail_app.test_client()
    request_reset(owner)
    (url,) = reset_links(rt, smtp)
    assert use_link(owner, url).status_code == 303

    elsewhere = mail_app.test_client()
    assert elsewhere.get(link).status_code == 404
    assert _user(rt).email == ALICE
    (reset,) = events(rt, EventTag.PASSWORD_RESET)
    assert reset.details["email_changes_cancelled"] == 1


def test_the_sign_in_page_links_to_the_reset_form(browser: FlaskClient) -> None:
    page = browser.get("/login").get_data(as_text=True)
    assert 'href="/password/forgot">Forgot your password?</a>' in page
    form = browser.get("/password/forgot").get_data(as_text=True)
    assert '<label for="email">Email address</label>' in form
    assert 'name="csrf_token"' in form and 'autocomplete="username"' in form


def test_full_reset_signs_everything_out_and_mails_a_notice(
    mail_app: Flask, rt: Runtime, smtp: MailServer
) -> None:
    create_user(rt)
    laptop = mail_app.test_client()
    assert sign_in(laptop).status_code == 303  # a session the reset must end
    assert laptop.get("/account").status_code == 200
    browser = mail_app.test_client()
    answered = request_reset(browser)
    assert answered.status_code == 200
    assert "If an account uses this address" in answered.get_data(as_text=True)
    (url,) = reset_links(rt, smtp)
    page = browser.get(_path(url)).get_data(as_text=True)
    assert 'autocomplete="new-password"' in page and 'name="code"' not in page
    done = use_link(browser, url)
    assert done.status_code == 303, done.get_data(as_text=True)
    assert done.headers["Location"] == "/login?reset=1"
    assert "Your password was reset" in browser.get("/login?reset=1").get_data(as_text=True)
    assert laptop.get("/account").status_code == 303  # the other session has ended
    assert sign_in(browser).status_code == 200  # the old password no longer works
    assert sign_in(browser, password=NEW_PASSWORD).status_code == 303
    (reset,) = events(rt, EventTag.PASSWORD_RESET)
    assert reset.user_id == _user(rt).id and reset.details["sessions_ended"] == 1
    assert [e.details["reason"] for e in events(rt, EventTag.SESSION_ENDED)] == [
        "password_reset"]
    assert len(events(rt, EventTag.PASSWORD_RESET_REQUESTED)) == 1
    _deliver(rt)
    subjects = [str(m["Subject"]) for m in smtp.to(ALICE)]
    assert subjects.count("Reset your password") == 1
    assert subjects.count("Your password was reset") == 1
    with rt.session_factory() as db:  # only the hash of the link was ever stored
        row = db.scalar(select(OneTimeToken).where(OneTimeToken.purpose == "password_reset"))
        assert row is not None and row.used_at is not None
        assert url.rsplit("/", 1)[1] not in row.token_hash


def test_a_reset_started_from_a_relying_service_returns_to_it(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    create_user(rt)
    target = "/authorize?client_id=shop&response_type=code&scope=openid&state=a%26b"
    login = browser.get("/login", query_string={"next": target}).get_data(as_text=True)
    forgot_link = re.search(r'id="forgot-link" href="([^"]+)"', login)
    assert forgot_link is not None
    forgot = browser.get(html.unescape(forgot_link.group(1))).get_data(as_text=True)
    assert hidden_fields(forgot)["next"] == target
    assert browser.post("/password/forgot", data={
        **hidden_fields(forgot), "email": ALICE}).status_code == 200
    (url,) = reset_links(rt, smtp)
    assert "authorize" not in url  # kept with the link, not in the mailed URL
    done = use_link(browser, url)
    assert done.status_code == 303
    location = urlsplit(done.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"reset": ["1"], "next": [target]}
    page = browser.get(done.headers["Location"]).get_data(as_text=True)
    assert "Your password was reset" in page and hidden_fields(page)["next"] == target
    signed_in = sign_in(browser, password=NEW_PASSWORD, next_url=hidden_fields(page)["next"])
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == target


def test_a_reset_does_not_return_to_another_origin(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    create_user(rt)
    page = browser.get("/password/forgot").get_data(as_text=True)
    browser.post("/password/forgot", data={
        "csrf_token": csrf_token(page), "email": ALICE, "next": "//evil.example/"})
    (url,) = reset_links(rt, smtp)
    done = use_link(browser, url)
    assert done.status_code == 303 and done.headers["Location"] == "/login?reset=1"


def test_a_link_works_once(browser: FlaskClient, rt: Runtime, smtp: MailServer) -> None:
    create_user(rt)
    request_reset(browser)
    (url,) = reset_links(rt, smtp)
    assert use_link(browser, url).status_code == 303
    assert _invalid(use_link(browser, url, password="yet another long passphrase"))
    assert sign_in(browser, password=NEW_PASSWORD).status_code == 303


def test_an_expired_link_is_refused(browser: FlaskClient, rt: Runtime,
                                    smtp: MailServer) -> None:
    create_user(rt)
    request_reset(browser)
    (url,) = reset_links(rt, smtp)
    with rt.session_factory() as db:
        row = db.scalar(select(OneTimeToken).where(OneTimeToken.purpose == "password_reset"))
        assert row is not None  # valid for 30 minutes by default
        assert timedelta(minutes=29) < row.expires_at - row.created_at <= timedelta(minutes=30)
        db.execute(update(OneTimeToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert _invalid(use_link(browser, url))
    assert sign_in(browser).status_code == 303  # the password did not change


def test_a_tampered_link_is_refused(browser: FlaskClient, rt: Runtime,
                                    smtp: MailServer) -> None:
    create_user(rt)
    request_reset(browser)
    (url,) = reset_links(rt, smtp)
    token = url.rsplit("/", 1)[1]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (flipped, token[:-1], token + "x", "x" * 200, "password_reset"):
        assert _invalid(use_link(browser, url.rsplit("/", 1)[0] + "/" + bad)), bad
    assert use_link(browser, url).status_code == 303  # the real one still works


def test_a_newer_link_supersedes_the_older_one(browser: FlaskClient, rt: Runtime,
                                               smtp: MailServer) -> None:
    create_user(rt)
    request_reset(browser)
    request_reset(browser)
    older, newer = reset_links(rt, smtp)
    assert older != newer
    assert _invalid(use_link(browser, older))
    assert use_link(browser, newer).status_code == 303


def test_a_successful_sign_in_invalidates_the_link(
    mail_app: Flask, rt: Runtime, smtp: MailServer
) -> None:
    create_user(rt)
    browser = mail_app.test_client()
    request_reset(browser)
    (url,) = reset_links(rt, smtp)
    assert sign_in(mail_app.test_client(), password="not the password at all").status_code == 200
    assert browser.get(_path(url)).status_code == 200  # a failed sign-in changes nothing
    assert sign_in(mail_app.test_client()).status_code == 303  # the owner remembered it
    assert _invalid(use_link(browser, url))


def test_a_password_change_invalidates_the_link(
    mail_app: Flask, rt: Runtime, smtp: MailServer
) -> None:
    create_user(rt)
    owner = mail_app.test_client()
    assert sign_in(owner).status_code == 303  # signed in before the link was asked for
    stranger = mail_app.test_client()
    request_reset(stranger)
    (url,) = reset_links(rt, smtp)
    assert stranger.get(_path(url)).status_code == 200  # still usable...
    page = owner.get("/account/password").get_data(as_text=True)
    changed = owner.post("/account/password", data={
        "csrf_token": csrf_token(page), "current_password": PASSWORD,
        "new_password": "the owner's own new passphrase", "new_password_again":
        "the owner's own new passphrase", "sign_out_others": "on"})
    assert changed.status_code == 303
    assert _invalid(use_link(stranger, url))  # ...until the password changed
    assert sign_in(stranger, password="the owner's own new passphrase").status_code == 303


def test_the_new_password_follows_the_policy_and_a_refusal_keeps_the_link(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    create_user(rt)
    request_reset(browser)
    (url,) = reset_links(rt, smtp)
    short = use_link(browser, url, password="short")
    assert short.status_code == 400 and "at least 12" in short.get_data(as_text=True)
    differ = use_link(browser, url, again="something else entirely")
    assert differ.status_code == 400 and "not the same" in differ.get_data(as_text=True)
    common = use_link(browser, url, password="password1234")
    assert common.status_code == 400 and "too common" in common.get_data(as_text=True)
    assert use_link(browser, url).status_code == 303


def test_with_two_factor_the_link_needs_a_code(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    user = create_user(rt)
    secret, recovery = _enable(rt, user.id, datetime.now(UTC) - timedelta(minutes=2))
    request_reset(browser)
    (url,) = reset_links(rt, smtp)
    assert "authenticator app" in _text(smtp.to(ALICE)[-1])
    page = browser.get(_path(url)).get_data(as_text=True)
    assert 'name="code"' in page and 'autocomplete="one-time-code"' in page
    missing = use_link(browser, url)
    assert missing.status_code == 400 and "code is not valid" in missing.get_data(as_text=True)
    wrong = use_link(browser, url, code="000000")
    assert wrong.status_code == 400
    assert _user(rt).password_hash == user.password_hash  # nothing changed
    # The link survives a wrong code; a recovery code completes the reset.
    assert use_link(browser, url, code=recovery[0]).status_code == 303
    (reset,) = events(rt, EventTag.PASSWORD_RESET)
    assert reset.details["method"] == "link+recovery"
    assert len(events(rt, EventTag.SECOND_FACTOR_FAILURE)) == 2
    # Signing in still asks for the second factor after the new password.
    step = sign_in(browser, password=NEW_PASSWORD)
    assert step.status_code == 303 and step.headers["Location"].startswith("/login/code")
    assert pyotp.TOTP(secret).now()


def test_a_totp_code_works_too(browser: FlaskClient, rt: Runtime, smtp: MailServer) -> None:
    user = create_user(rt)
    secret, _ = _enable(rt, user.id, datetime.now(UTC) - timedelta(minutes=2))
    request_reset(browser)
    (url,) = reset_links(rt, smtp)
    assert use_link(browser, url, code=pyotp.TOTP(secret).now()).status_code == 303
    assert events(rt, EventTag.PASSWORD_RESET)[0].details["method"] == "link+otp"


def test_a_reset_clears_the_lockout(browser: FlaskClient, rt: Runtime,
                                    smtp: MailServer) -> None:
    create_user(rt)
    with rt.session_factory() as db:
        db.execute(update(User).values(lockout_threshold=3))
        db.commit()
    for _ in range(3):
        sign_in(browser, password="not the password at all")
    assert _user(rt).locked_at is not None
    request_reset(browser)
    (url,) = reset_links(rt, smtp)
    assert use_link(browser, url).status_code == 303
    assert _user(rt).locked_at is None
    assert sign_in(browser, password=NEW_PASSWORD).status_code == 303
    assert len(events(rt, EventTag.ACCOUNT_UNLOCKED)) == 1


def _without_csrf(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', html)


def test_known_and_unknown_addresses_get_the_same_page(
    mail_app: Flask, rt: Runtime, smtp: MailServer
) -> None:
    create_user(rt)
    known = request_reset(mail_app.test_client(), ALICE)
    unknown = request_reset(mail_app.test_client(), "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert _without_csrf(known.get_data(as_text=True)) == \
        _without_csrf(unknown.get_data(as_text=True))
    assert sorted(known.headers.keys()) == sorted(unknown.headers.keys())
    _deliver(rt)
    assert len(smtp.to(ALICE)) == 1 and not smtp.to("nobody@example.com")
    requested = events(rt, EventTag.PASSWORD_RESET_REQUESTED)
    assert [e.user_id is not None for e in requested] == [True, False]


def test_requests_are_limited_per_address(
    tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer
) -> None:
    with _app(tmp_path, database_url, redis_url, smtp,
              email_requests_per_address_per_hour=2) as app:
        rt: Runtime = app.extensions["idp"]
        create_user(rt)
        answers = [request_reset(app.test_client()) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert 1 <= int(answers[2].headers["Retry-After"]) <= 3600
        assert _without_csrf(answers[2].get_data(as_text=True)) == \
            _without_csrf(answers[0].get_data(as_text=True))  # the same words
        unknown = [request_reset(app.test_client(), "x@example.com") for _ in range(3)]
        assert [a.status_code for a in unknown] == [200, 200, 429]  # the same for strangers
        assert len(reset_links(rt, smtp)) == 2  # the mailbox got two, not three


def test_requests_are_limited_per_ip(
    tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer
) -> None:
    with _app(tmp_path, database_url, redis_url, smtp, email_requests_per_ip_per_hour=2) as app:
        client = app.test_client()
        statuses = [request_reset(client, f"user{i}@example.com").status_code
                    for i in range(3)]
        assert statuses == [200, 200, 429]
        other_ip = app.test_client()
        other_ip.environ_base["REMOTE_ADDR"] = "192.0.2.7"
        assert request_reset(other_ip, "user9@example.com").status_code == 200


def _field(page: str, field_id: str) -> str:
    match = re.search(rf'<input id="{field_id}"[^>]*>', page)
    assert match, field_id
    return match.group(0)


def test_a_refusal_is_tied_to_the_field_it_is_about(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    user = create_user(rt)
    _enable(rt, user.id, datetime.now(UTC) - timedelta(minutes=2))
    request_reset(browser)
    (url,) = reset_links(rt, smtp)
    cases = {
        "code": use_link(browser, url, code="000000"),
        "new-password": use_link(browser, url, password="short"),
        "new-password-again": use_link(browser, url, again="something else entirely"),
    }
    for field_id, response in cases.items():
        page = response.get_data(as_text=True)
        assert response.status_code == 400
        assert 'role="alert" id="reset-error"' in page
        tied = _field(page, field_id)
        assert 'aria-invalid="true"' in tied and "reset-error" in tied and "autofocus" in tied
        others = [f for f in ("code", "new-password", "new-password-again") if f != field_id]
        for other in others:
            assert 'aria-invalid' not in _field(page, other)
            assert "autofocus" not in _field(page, other)
