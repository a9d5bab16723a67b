"""Login alerts, checked at a real SMTP server after the worker ran, and their settings page."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from idp.events import Actor, EventTag
from idp.mail import MAIL
from idp.models import Device, OutboxItem, User, utcnow
from idp.runtime import Runtime
from idp.security.alerts import LOGIN_FAILURE_ALERT, AlertService
from idp.worker import build_worker
from tests.conftest import make_settings, running_app
from tests.helpers import create_user, csrf_token, events, login_form, sign_in
from tests.integration.test_two_factor import _enable
from tests.mailserver import MailServer
from tests.oidc import register_client

ALICE = "alice@example.com"
WRONG = "not the right password"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture
def mail_app(
    tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer
) -> Iterator[Flask]:
    with running_app(make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                                   smtp_url=smtp.url)) as app:
        yield app


@pytest.fixture
def mail_rt(mail_app: Flask) -> Runtime:
    rt: Runtime = mail_app.extensions["idp"]
    return rt


def _browser(app: Flask) -> FlaskClient:
    browser = app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = FIREFOX
    return browser


def _deliver(rt: Runtime, minutes_later: float = 0) -> int:
    """One worker pass, as if it ran ``minutes_later`` from now."""
    worker = build_worker(rt)
    worker.clock = lambda: utcnow() + dt.timedelta(minutes=minutes_later)
    return worker.run_once()


def _after_window(rt: Runtime) -> float:
    return rt.settings.alert_failure_window_minutes + 1


def _prefer(rt: Runtime, on_success: str | None = None, on_failure: bool | None = None) -> None:
    values: dict[str, object] = {}
    if on_success is not None:
        values["alert_on_success"] = on_success
    if on_failure is not None:
        values["alert_on_failure"] = on_failure
    with rt.session_factory() as db:
        db.execute(update(User).values(**values))
        db.commit()


def _text(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _sign_out(browser: FlaskClient) -> None:
    page = browser.get("/account").get_data(as_text=True)
    assert browser.post("/logout", data={"csrf_token": csrf_token(page)}).status_code == 303


def _outbox(rt: Runtime, kind: str) -> list[OutboxItem]:
    with rt.session_factory() as db:
        return list(db.scalars(select(OutboxItem).where(OutboxItem.kind == kind)))


# Successful sign-ins ------------------------------------------------------------------------


def test_by_default_a_new_device_is_reported_and_a_known_one_is_not(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt)
    browser = _browser(mail_app)
    assert sign_in(browser).status_code == 303
    assert smtp.messages == []  # never on the sign-in's path
    assert _deliver(mail_rt) == 1
    [mail] = smtp.to(ALICE)
    assert mail["Subject"] == "New device signed in to your account"
    text = _text(mail)
    assert "Firefox 128 on Linux" in text and "127.0.0.1" in text
    assert "http://127.0.0.1:8000/account" in text

    _sign_out(browser)
    assert sign_in(browser).status_code == 303  # same browser: its device cookie is known
    assert _deliver(mail_rt) == 0
    assert len(smtp.messages) == 1

    assert sign_in(_browser(mail_app)).status_code == 303  # another browser: a new device
    assert _deliver(mail_rt) == 1
    assert len(smtp.to(ALICE)) == 2


def test_always_reports_every_sign_in_including_known_devices(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt)
    _prefer(mail_rt, on_success="always")
    browser = _browser(mail_app)
    sign_in(browser)
    _sign_out(browser)
    sign_in(browser)
    assert _deliver(mail_rt) == 2
    subjects = [m["Subject"] for m in smtp.to(ALICE)]
    assert subjects == ["New device signed in to your account", "New sign-in to your account"]


def test_never_reports_no_successful_sign_in(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt)
    _prefer(mail_rt, on_success="never")
    sign_in(_browser(mail_app))
    sign_in(_browser(mail_app))
    assert _deliver(mail_rt, _after_window(mail_rt)) == 0
    assert smtp.messages == []
    assert _outbox(mail_rt, MAIL) == []


def test_a_sign_in_alert_names_the_application_signed_in_to(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    """Sent to the sign-in form by an application's authorization request: the alert names
    that application; a sign-in to the account itself says so in the owner's language."""
    create_user(mail_rt)
    shop = register_client(mail_rt, "Example Shop")
    authorize = "/authorize?" + urlencode(
        {"client_id": shop.client_id, "response_type": "code", "scope": "openid",
         "redirect_uri": shop.redirect_uri, "state": "s"}
    )
    assert sign_in(_browser(mail_app), next_url=authorize).status_code == 303
    assert _deliver(mail_rt) == 1
    [mail] = smtp.to(ALICE)
    assert "Signed in to: Example Shop" in _text(mail)
    assert "Example Shop" in str(mail.get_body(("html",)))

    with mail_rt.session_factory() as db:
        db.execute(update(User).values(locale="fr"))
        db.commit()
    assert sign_in(_browser(mail_app)).status_code == 303
    assert _deliver(mail_rt) == 1
    assert "Connecté à : Votre compte" in _text(smtp.to(ALICE)[-1])
    # The sign-in events are those products' too: the activity log's product filter finds
    # the sign-in to the shop under the shop, the other under the account.
    logins = events(mail_rt, EventTag.LOGIN_SUCCESS)
    assert [e.product for e in logins] == [shop.client_id, "account"]


def test_successful_sign_in_alerts_are_capped_per_hour(mail_rt: Runtime) -> None:
    created = create_user(mail_rt)
    with mail_rt.session_factory() as db:
        user = db.get(User, created.id)
        assert user is not None
        device = Device(user_id=user.id, browser_key_hash="0" * 64, browser="Firefox 128")
        db.add(device)
        alerts = AlertService(db, mail_rt.store, mail_rt.settings, success_alerts_per_hour=2)
        for _ in range(3):
            alerts.on_sign_in_success(user, device, True, "192.0.2.1", "account")
        db.commit()
    assert len(_outbox(mail_rt, MAIL)) == 2


# Failed sign-ins ----------------------------------------------------------------------------


def test_five_failures_make_one_mail_that_says_five(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt)
    browser = _browser(mail_app)
    for _ in range(5):
        assert sign_in(browser, password=WRONG).status_code == 200
    sign_in(browser, email="nobody@example.com", password=WRONG)  # no account: no alert
    assert len(_outbox(mail_rt, LOGIN_FAILURE_ALERT)) == 1

    assert _deliver(mail_rt) == 0  # the window is still open
    assert smtp.messages == []
    assert _deliver(mail_rt, _after_window(mail_rt)) == 1
    [mail] = smtp.messages
    assert smtp.received[0].rcpt_tos == [ALICE]
    assert mail["Subject"] == "5 failed sign-in attempts on your account"
    text = _text(mail)
    assert "tried 5 times" in text and "127.0.0.1" in text
    assert "correct password" not in text  # wrong passwords only
    assert "http://127.0.0.1:8000/account" in text and "change your password" in text.lower()
    assert _deliver(mail_rt, 2 * _after_window(mail_rt)) == 0  # sent once
    assert len(smtp.messages) == 1


def test_a_failure_alert_is_in_the_account_language(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt)
    with mail_rt.session_factory() as db:
        db.execute(update(User).values(locale="fr"))
        db.commit()
    for _ in range(2):
        sign_in(_browser(mail_app), password=WRONG)
    assert _deliver(mail_rt, _after_window(mail_rt)) == 1
    [mail] = smtp.messages
    assert "tentatives de connexion" in str(mail["Subject"]), mail["Subject"]


def test_a_failure_whose_transaction_fails_does_not_silence_the_window(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first failure opens the window (in the store) and queues its alert (in the
    database); should that commit fail, the window must close again, or every later failure
    in it would go unreported."""
    create_user(mail_rt)
    browser = _browser(mail_app)
    token = login_form(browser)
    commit = Session.commit

    def fails_once(session: Session) -> None:
        monkeypatch.setattr(Session, "commit", commit)
        raise OperationalError("COMMIT", {}, Exception("database is locked"))

    monkeypatch.setattr(Session, "commit", fails_once)
    lost = browser.post("/login", data={"csrf_token": token, "email": ALICE, "password": WRONG})
    assert lost.status_code == 503
    assert _outbox(mail_rt, LOGIN_FAILURE_ALERT) == []
    for _ in range(2):
        assert sign_in(_browser(mail_app), password=WRONG).status_code == 200

    assert _deliver(mail_rt, _after_window(mail_rt)) == 1
    [mail] = smtp.messages
    assert mail["Subject"] == "2 failed sign-in attempts on your account"


def test_wrong_two_factor_codes_are_mailed_and_counted_as_failed_sign_ins(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    """Someone with the password but not the code: their wrong codes are failed sign-ins the
    owner is told about (the window a wrong code opens counts them), with wrong passwords."""
    user = create_user(mail_rt)
    _enable(mail_rt, user.id, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2))
    assert _deliver(mail_rt) == 1  # "two-factor authentication turned on"
    browser = _browser(mail_app)
    for _ in range(2):
        started = sign_in(browser)
        assert started.headers["Location"].startswith("/login/code")
        page = browser.get(started.headers["Location"]).get_data(as_text=True)
        wrong = browser.post("/login/code", data={"csrf_token": csrf_token(page), "code": "000000"})
        assert wrong.status_code == 400
    assert sign_in(_browser(mail_app), password=WRONG).status_code == 200
    assert _deliver(mail_rt, _after_window(mail_rt)) == 1
    [mail] = [m for m in smtp.to(ALICE) if "failed sign-in" in str(m["Subject"])]
    assert mail["Subject"] == "3 failed sign-in attempts on your account"
    # Two of them had the right password: the owner is told someone else knows it.
    text = " ".join(_text(mail).split())
    assert ("2 attempts used your correct password with a wrong two-factor code: "
            "someone else knows your password.") in text
    assert "2 attempts used your correct password" in str(mail.get_body(("html",)))


def test_failure_alerts_turned_off_send_nothing(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt)
    _prefer(mail_rt, on_failure=False)
    for _ in range(3):
        sign_in(_browser(mail_app), password=WRONG)
    assert _outbox(mail_rt, LOGIN_FAILURE_ALERT) == []
    assert _deliver(mail_rt, _after_window(mail_rt)) == 0
    assert smtp.messages == []


def test_a_lost_window_key_costs_at_most_one_extra_mail_never_a_missing_failure(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    user = create_user(mail_rt)
    browser = _browser(mail_app)
    sign_in(browser, password=WRONG)
    sign_in(browser, password=WRONG)
    mail_rt.store.client.delete(mail_rt.store.alert_failure_window_key(user.id))  # Redis lost it
    sign_in(browser, password=WRONG)
    assert _deliver(mail_rt, _after_window(mail_rt)) == 2
    subjects = sorted(m["Subject"] for m in smtp.to(ALICE))
    assert subjects == [
        "1 failed sign-in attempt on your account",
        "3 failed sign-in attempts on your account",
    ]


# SMTP outage --------------------------------------------------------------------------------


def test_sign_ins_work_while_smtp_is_down_and_every_mail_arrives_once_after(
    mail_app: Flask, mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt)
    smtp.stop()
    first, second = _browser(mail_app), _browser(mail_app)
    assert sign_in(first, password=WRONG).status_code == 200
    assert sign_in(first, password=WRONG).status_code == 200
    assert sign_in(first).status_code == 303
    assert sign_in(second).status_code == 303
    assert first.get("/account").status_code == 200

    assert _deliver(mail_rt, _after_window(mail_rt)) == 0  # every attempt fails
    with mail_rt.session_factory() as db:
        items = list(db.scalars(select(OutboxItem)))
    assert len(items) == 3
    assert all(i.attempts == 1 and i.done_at is None and i.failed_at is None for i in items)

    smtp.start()  # a new server on the same port
    assert _deliver(mail_rt, 2 * _after_window(mail_rt)) == 3  # past the backoff
    received = smtp.to(ALICE)
    assert sorted(m["Subject"] for m in received) == [
        "2 failed sign-in attempts on your account",
        "New device signed in to your account",
        "New device signed in to your account",
    ]
    assert len({m["Message-ID"] for m in received}) == 3
    assert _deliver(mail_rt, 3 * _after_window(mail_rt)) == 0
    assert len(smtp.messages) == 3


# The settings page --------------------------------------------------------------------------


def _alerts_page(client: FlaskClient) -> str:
    response = client.get("/account/alerts")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _checked(html: str) -> set[str]:
    return set(re.findall(r'id="(alert-on-[a-z_-]+)"[^>]*\bchecked\b', html, re.S))


def _user(rt: Runtime) -> User:
    with rt.session_factory() as db:
        return db.scalars(select(User)).one()


def test_alerts_page_requires_sign_in(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    response = client.get("/account/alerts")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=/account/alerts"
    token = csrf_token(client.get("/login").get_data(as_text=True))
    posted = client.post("/account/alerts",
                         data={"csrf_token": token, "alert_on_success": "never"})
    assert posted.status_code == 303 and posted.headers["Location"].startswith("/login")
    assert _user(runtime).alert_on_success == "new_device"


def test_alerts_page_shows_and_saves_the_choices(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    sign_in(client)
    overview = client.get("/account").get_data(as_text=True)
    assert 'href="/account/alerts">Login alerts</a>' in overview
    html = _alerts_page(client)
    for field_id in ("alert-on-success-always", "alert-on-success-new_device",
                     "alert-on-success-never", "alert-on-failure"):
        assert f'<label for="{field_id}"' in html
    assert _checked(html) == {"alert-on-success-new_device", "alert-on-failure"}  # defaults

    saved = client.post("/account/alerts", data={"csrf_token": csrf_token(html),
                                                  "alert_on_success": "always"})
    assert saved.status_code == 303
    assert saved.headers["Location"] == "/account/alerts?saved=1"
    user = _user(runtime)
    assert (user.alert_on_success, user.alert_on_failure) == ("always", False)
    [event] = events(runtime, EventTag.ALERTS_CHANGED)
    assert event.user_id == user.id
    assert event.details == {"alert_on_success": "always", "alert_on_failure": False}
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Saved." in page
    assert _checked(page) == {"alert-on-success-always"}


def test_alerts_page_refuses_bad_values_and_changes_nothing(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    sign_in(client)
    token = csrf_token(_alerts_page(client))
    for data in (
        {"alert_on_success": "sometimes", "alert_on_failure": "on"},
        {"alert_on_failure": "on"},
        {"alert_on_success": "never", "alert_on_failure": "yes please"},
    ):
        response = client.post("/account/alerts", data={"csrf_token": token, **data})
        assert response.status_code == 400, data
        body = response.get_data(as_text=True)
        assert 'role="alert"' in body
        assert "Choose when to be alerted" in body or "not valid" in body
    user = _user(runtime)
    assert (user.alert_on_success, user.alert_on_failure) == ("new_device", True)
    assert events(runtime, EventTag.ALERTS_CHANGED) == []


def test_saving_the_same_choices_again_records_nothing(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    sign_in(client)
    token = csrf_token(_alerts_page(client))
    data = {"csrf_token": token, "alert_on_success": "new_device", "alert_on_failure": "on"}
    assert client.post("/account/alerts", data=data).status_code == 303
    assert events(runtime, EventTag.ALERTS_CHANGED) == []


def test_set_preferences_records_who_changed_them(runtime: Runtime) -> None:
    user = create_user(runtime)
    with runtime.session_factory() as db:
        row = db.get(User, user.id)
        assert row is not None
        changed = AlertService(db, runtime.store, runtime.settings).set_preferences(
            row, "never", False, Actor(ip="192.0.2.9")
        )
    assert changed
    [event] = events(runtime, EventTag.ALERTS_CHANGED)
    assert event.ip == "192.0.2.9"
