"""Changing the password at /account/password: the current password first, the same policy as
everywhere, nothing changed on any refusal; on success the other devices are signed out when
the user leaves the box checked, a mail is queued and the change is in the activity log."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.events import EventTag
from idp.models import OutboxItem, User, UserSession
from idp.runtime import Runtime
from tests.helpers import (
    PASSWORD,
    create_user,
    csrf_token,
    events,
    request_email_change,
    sign_in,
)
from tests.integration.test_account_access import (
    CHROME_LINUX,
    FIREFOX_WINDOWS,
    SAFARI_IPHONE,
    client_session_id,
    is_signed_in,
    signed_in_client,
)

NEW_PASSWORD = "a new and much longer passphrase"


def password_hash(runtime: Runtime) -> str | None:
    with runtime.session_factory() as db:
        return db.scalar(select(User.password_hash).where(User.email == "alice@example.com"))


def mails(runtime: Runtime, template: str) -> list[dict[str, object]]:
    with runtime.session_factory() as db:
        payloads = [item.payload for item in db.scalars(select(OutboxItem))]
    return [p for p in payloads if p.get("template") == template]


def change(
    client: FlaskClient,
    current: str = PASSWORD,
    new: str = NEW_PASSWORD,
    again: str | None = None,
    *,
    sign_out_others: bool = True,
    token: str | None = None,
) -> tuple[int, str]:
    form = client.get("/account/password").get_data(as_text=True)
    data = {
        "csrf_token": token if token is not None else csrf_token(form),
        "current_password": current,
        "new_password": new,
        "new_password_again": new if again is None else again,
    }
    if sign_out_others:
        data["sign_out_others"] = "on"
    response = client.post("/account/password", data=data)
    return response.status_code, response.get_data(as_text=True)


@pytest.fixture
def three_devices(app: Flask, runtime: Runtime) -> tuple[FlaskClient, FlaskClient, FlaskClient]:
    """Alice on her laptop (the one changing the password), her phone and a desktop."""
    create_user(runtime)
    return (
        signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.1"),
        signed_in_client(app, SAFARI_IPHONE, "192.0.2.2"),
        signed_in_client(app, CHROME_LINUX, "192.0.2.3"),
    )


def assert_nothing_changed(runtime: Runtime, before: str | None, *devices: FlaskClient) -> None:
    assert password_hash(runtime) == before
    assert all(is_signed_in(d) for d in devices)
    assert events(runtime, EventTag.PASSWORD_CHANGED) == []
    assert events(runtime, EventTag.SESSION_ENDED) == []
    assert mails(runtime, "password_changed") == []


def test_the_form_asks_for_the_current_password_and_offers_to_sign_out_others_by_default(
    three_devices: tuple[FlaskClient, FlaskClient, FlaskClient],
) -> None:
    page = three_devices[0].get("/account/password").get_data(as_text=True)
    assert 'autocomplete="current-password"' in page
    assert page.count('autocomplete="new-password"') == 2
    assert 'name="sign_out_others" value="on" checked' in page
    assert "Sign out all other devices" in page


def test_a_wrong_current_password_changes_nothing(
    runtime: Runtime, three_devices: tuple[FlaskClient, FlaskClient, FlaskClient]
) -> None:
    before = password_hash(runtime)
    status, page = change(three_devices[0], current="not my password at all")
    assert status == 400
    assert "That is not your current password." in page
    assert_nothing_changed(runtime, before, *three_devices)


@pytest.mark.parametrize(
    ("new", "again", "reason"),
    [
        ("short", None, "Use at least 12 characters."),
        ("password1234", None, "This password is too common. Choose another one."),
        ("alice-in-wonderland-2026", None, "The password must not contain your email address."),
        (NEW_PASSWORD, NEW_PASSWORD + "!", "The two new passwords are not the same."),
        (PASSWORD, None, "The new password is your current password."),
        ("", None, "Enter your current password and your new password twice."),
    ],
)
def test_a_refused_new_password_says_why_and_changes_nothing(
    runtime: Runtime,
    three_devices: tuple[FlaskClient, FlaskClient, FlaskClient],
    new: str,
    again: str | None,
    reason: str,
) -> None:
    before = password_hash(runtime)
    status, page = change(three_devices[0], new=new, again=again)
    assert status == 400
    assert reason in page
    assert_nothing_changed(runtime, before, *three_devices)
    assert sign_in(three_devices[0].application.test_client()).status_code == 303  # old works


def test_changing_signs_out_the_other_devices_and_keeps_this_one(
    app: Flask, runtime: Runtime, three_devices: tuple[FlaskClient, FlaskClient, FlaskClient]
) -> None:
    laptop, phone, desktop = three_devices
    old_token = csrf_token(laptop.get("/account/password").get_data(as_text=True))

    status, _ = change(laptop)

    assert status == 303
    page = laptop.get("/account/password?changed=1&ended=2").get_data(as_text=True)
    assert "Your password was changed. 2 other sessions were signed out." in page
    assert is_signed_in(laptop)
    assert not is_signed_in(phone) and not is_signed_in(desktop)
    with runtime.session_factory() as db:
        reasons = db.scalars(
            select(UserSession.end_reason).where(UserSession.ended_at.is_not(None))
        )
        assert sorted(reasons) == ["password_changed", "password_changed"]
    # The new password signs in, the old one no longer does.
    assert sign_in(app.test_client(), password=NEW_PASSWORD).status_code == 303
    assert sign_in(app.test_client()).status_code == 200  # the form again, with the error
    # Recorded and mailed.
    [changed] = events(runtime, EventTag.PASSWORD_CHANGED)
    assert changed.session_id == client_session_id(runtime, laptop)
    assert changed.details == {
        "signed_out_other_sessions": True,
        "sessions_ended": 2,
        "email_changes_cancelled": 0,
    }
    ended = events(runtime, EventTag.SESSION_ENDED)
    assert [e.details["reason"] for e in ended] == ["password_changed", "password_changed"]
    [mail] = mails(runtime, "password_changed")
    assert mail["to"] == "alice@example.com"
    # The CSRF token was rotated: a form rendered before the change no longer posts.
    assert laptop.post("/logout", data={"csrf_token": old_token}).status_code == 400
    assert is_signed_in(laptop)


def test_unchecking_the_box_keeps_the_other_devices_signed_in(
    runtime: Runtime, three_devices: tuple[FlaskClient, FlaskClient, FlaskClient]
) -> None:
    status, _ = change(three_devices[0], sign_out_others=False)

    assert status == 303
    assert all(is_signed_in(d) for d in three_devices)
    [changed] = events(runtime, EventTag.PASSWORD_CHANGED)
    assert changed.details == {
        "signed_out_other_sessions": False,
        "sessions_ended": 0,
        "email_changes_cancelled": 0,
    }
    assert events(runtime, EventTag.SESSION_ENDED) == []
    assert len(mails(runtime, "password_changed")) == 1


def test_changing_cancels_an_email_change_waiting_for_its_link(
    app: Flask, runtime: Runtime, three_devices: tuple[FlaskClient, FlaskClient, FlaskClient]
) -> None:
    """The notice of an email change the owner did not ask for tells them to change their
    password: that must void the intruder's link, even with the other devices kept."""
    laptop, _, intruder = three_devices
    link = request_email_change(intruder, "mallory@example.net")
    assert change(laptop, sign_out_others=False)[0] == 303

    assert app.test_client().get(link).status_code == 404
    with runtime.session_factory() as db:
        assert db.scalar(select(User.email)) == "alice@example.com"
    [changed] = events(runtime, EventTag.PASSWORD_CHANGED)
    assert changed.details["email_changes_cancelled"] == 1


def test_guessing_the_current_password_is_rate_limited(
    runtime: Runtime, three_devices: tuple[FlaskClient, FlaskClient, FlaskClient]
) -> None:
    laptop = three_devices[0]
    before = password_hash(runtime)
    for attempt in range(5):
        assert change(laptop, current=f"guess number {attempt}")[0] == 400
    # Past the limit even the right password is refused, and nothing changes.
    form = laptop.get("/account/password").get_data(as_text=True)
    response = laptop.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(form),
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD,
            "sign_out_others": "on",
        },
    )
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "Too many attempts" in response.get_data(as_text=True)
    assert_nothing_changed(runtime, before, *three_devices)


def test_policy_refusals_do_not_use_up_password_attempts(
    runtime: Runtime, three_devices: tuple[FlaskClient, FlaskClient, FlaskClient]
) -> None:
    laptop = three_devices[0]
    for _ in range(6):
        assert change(laptop, new="short")[0] == 400
    assert change(laptop)[0] == 303


def test_the_form_needs_its_csrf_token(
    runtime: Runtime, three_devices: tuple[FlaskClient, FlaskClient, FlaskClient]
) -> None:
    before = password_hash(runtime)
    assert change(three_devices[0], token="")[0] == 400
    assert change(three_devices[0], token="forged")[0] == 400
    assert_nothing_changed(runtime, before, *three_devices)


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    page = client.get("/account/password")
    assert page.status_code == 303
    assert page.headers["Location"].endswith("/login?next=/account/password")


@pytest.mark.parametrize("sign_out_others", [True, False])
def test_the_changing_browser_gets_a_new_session_cookie_and_a_copy_of_the_old_one_dies(
    app: Flask, runtime: Runtime, sign_out_others: bool
) -> None:
    """OWASP: the session id is renewed after a credential change; someone who copied the
    cookie (the reason one changes a password) is out, whatever the checkbox said."""
    create_user(runtime)
    laptop = signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.1")
    sid = client_session_id(runtime, laptop)
    old_cookie = laptop.get_cookie("idp_session")
    assert old_cookie is not None
    thief = app.test_client()
    thief.set_cookie("idp_session", old_cookie.value)
    assert is_signed_in(thief)

    status, _ = change(laptop, sign_out_others=sign_out_others)

    assert status == 303
    new_cookie = laptop.get_cookie("idp_session")
    assert new_cookie is not None and new_cookie.value != old_cookie.value
    assert is_signed_in(laptop) and client_session_id(runtime, laptop) == sid  # same session
    assert not is_signed_in(thief)
    with runtime.session_factory() as db:
        row = db.get(UserSession, sid)
        assert row is not None and row.ended_at is None


@pytest.mark.parametrize(("kwargs", "field_id"), [
    ({"current": "not my password"}, "current-password"),
    ({"new": "short"}, "new-password"),
    ({"again": "something else entirely"}, "new-password-again"),
])
def test_a_refusal_is_tied_to_the_field_it_is_about(
    three_devices: tuple[FlaskClient, FlaskClient, FlaskClient],
    kwargs: dict[str, str],
    field_id: str,
) -> None:
    status, page = change(three_devices[0], **kwargs)
    assert status == 400 and 'role="alert" id="password-error"' in page
    fields = {
        found.group(1): found.group(0)
        for found in re.finditer(r'<input id="([a-z-]+-password(?:-again)?)"[^>]*>', page)
    }
    assert set(fields) == {"current-password", "new-password", "new-password-again"}
    for name, tag in fields.items():
        assert ('aria-invalid="true"' in tag) == (name == field_id), name
        assert ("password-error" in tag) == (name == field_id), name
        assert ("autofocus" in tag) == (name == field_id), name
