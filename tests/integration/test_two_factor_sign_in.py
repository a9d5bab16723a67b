"""Signing in with a second factor: password, then a code; the session starts only after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp.events import EventTag
from idp.models import OutboxItem, RecoveryCode, User, UserSession
from idp.runtime import Runtime
from idp.security.alerts import LOGIN_FAILURE_ALERT
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
    first = client.post("/login/code", data={"csrf_token": csrf_token(html), "code": codes[0]})
    assert first.status_code == 303 and first.headers["Location"] == "/account"
    assert client.get("/account").status_code == 200
    with runtime.session_factory() as db:
        used = db.scalars(select(RecoveryCode).where(RecoveryCode.used_at.is_not(None))).all()
        assert [row.user_id for row in used] == [user.id]  # that one code, now spent
    # The same code again, from another browser, after the same password: refused.
    other = client.application.test_client()
    html = _password_step(other)
    again = other.post("/login/code", data={"csrf_token": csrf_token(html), "code": codes[0]})
    assert again.status_code == 400
    assert "That code is not valid" in again.get_data(as_text=True)
    assert other.get("/account").status_code == 303  # not signed in
    assert count(runtime, UserSession) == 1  # only the first browser's session
    # Another, unused recovery code still works.
    second = other.post("/login/code", data={"csrf_token": csrf_token(html), "code": codes[1]})
    assert second.status_code == 303 and second.headers["Location"] == "/account"
    assert count(runtime, UserSession) == 2


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


def test_code_page_without_a_pending_sign_in_goes_back_to_login(
    client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    response = client.get("/login/code")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    # A valid code posted without the password step first signs nobody in.
    token = csrf_token(client.get("/login").get_data(as_text=True))
    forged = client.post(
        "/login/code", data={"csrf_token": token, "code": pyotp.TOTP(secret).now()}
    )
    assert forged.status_code == 303 and forged.headers["Location"] == "/login"
    assert client.get("/account").status_code == 303
    assert count(runtime, UserSession) == 0


# Wrong codes count as failed attempts ---------------------------------------------------------


def _threshold(runtime: Runtime, user_id: str, threshold: int) -> None:
    with runtime.session_factory() as db:
        db.execute(update(User).where(User.id == user_id).values(lockout_threshold=threshold))
        db.commit()


def _locked(runtime: Runtime, user_id: str) -> bool:
    with runtime.session_factory() as db:
        user = db.get(User, user_id)
        assert user is not None
        return user.locked_at is not None


def _wrong_code(client: FlaskClient, html: str) -> str:
    answer = client.post("/login/code", data={"csrf_token": csrf_token(html), "code": "000000"})
    return answer.get_data(as_text=True)


def test_the_password_and_wrong_codes_in_turn_lock_the_account(
    client: FlaskClient, runtime: Runtime
) -> None:
    """Someone who has the password cannot guess codes for ever by signing in again between
    guesses: the count is reset only by a whole sign-in, so the third attempt locks."""
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    _threshold(runtime, user.id, 3)
    html = _password_step(client)  # attempt 1
    assert "That code is not valid" in _wrong_code(client, html)  # attempt 2
    assert not _locked(runtime, user.id)
    html = _password_step(client)  # attempt 3, the right password: the code may still come
    ended = _wrong_code(client, html)  # attempt 4 ends it
    assert "Incorrect email or password." in ended and 'name="password"' in ended
    assert _locked(runtime, user.id)
    assert len(events(runtime, EventTag.ACCOUNT_LOCKED)) == 1
    assert [e.details["reason"] for e in events(runtime, EventTag.SECOND_FACTOR_FAILURE)] == [
        "wrong_code", "wrong_code"]
    assert [m.payload["template"] for m in _mails(runtime)].count("account_locked") == 1
    # Locked: the right password and the right code no longer sign in.
    refused = sign_in(client)
    assert refused.status_code == 200 and "Incorrect email or password." in refused.get_data(
        as_text=True)
    assert client.post("/login/code", data={"csrf_token": csrf_token(html),
                                            "code": pyotp.TOTP(secret).now()}).status_code == 303
    assert count(runtime, UserSession) == 0


def test_two_pending_sign_ins_cannot_step_over_the_lock(
    client: FlaskClient, runtime: Runtime
) -> None:
    """With the password, two pending sign-ins (two browsers) interleaved so that neither's
    wrong code lands exactly on its own last attempt: the count still passes the threshold
    with failed attempts, so the account locks (once), rather than the attacker getting a
    fresh set of code guesses every window without the account ever locking."""
    user = create_user(runtime)
    _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    _threshold(runtime, user.id, 3)
    first = _password_step(client)  # attempt 1: the first sign-in may fail up to attempt 3
    _wrong_code(client, first)  # attempt 2
    other = client.application.test_client()
    second = _password_step(other)  # attempt 3, the right password: its code may come at 4
    assert not _locked(runtime, user.id)
    _wrong_code(client, first)  # attempt 4: past the first's last, not the second's
    assert _locked(runtime, user.id)
    _wrong_code(other, second)  # attempt 5
    assert sign_in(client.application.test_client(), password="wrong again").status_code == 200
    assert len(events(runtime, EventTag.ACCOUNT_LOCKED)) == 1
    assert [m.payload["template"] for m in _mails(runtime)].count("account_locked") == 1


def test_a_right_code_resets_the_count(client: FlaskClient, runtime: Runtime) -> None:
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    _threshold(runtime, user.id, 3)
    html = _password_step(client)
    _wrong_code(client, html)
    done = client.post("/login/code", data={"csrf_token": csrf_token(html),
                                            "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 303
    other = client.application.test_client()
    for _ in range(2):  # two failures after a whole sign-in: not yet the threshold
        assert sign_in(other, password="not the right password at all").status_code == 200
    assert not _locked(runtime, user.id)


def test_a_wrong_code_sends_the_owner_the_failed_sign_in_alert(
    client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    html = _password_step(client)
    assert _alerts(runtime) == 0
    _wrong_code(client, html)
    assert _alerts(runtime) == 1


def test_a_pending_sign_in_of_an_account_locked_meanwhile_cannot_be_completed(
    client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    html = _password_step(client)
    with runtime.session_factory() as db:  # locked from elsewhere (the last failed attempt)
        db.execute(update(User).where(User.id == user.id).values(
            locked_at=datetime.now(UTC), lock_id="lock"))
        db.commit()
    answer = client.post("/login/code", data={"csrf_token": csrf_token(html),
                                              "code": pyotp.TOTP(secret).now()})
    assert answer.status_code == 200
    assert "Incorrect email or password." in answer.get_data(as_text=True)
    assert count(runtime, UserSession) == 0
    assert client.get("/login/code").status_code == 303  # the pending sign-in is over
    assert events(runtime, EventTag.SECOND_FACTOR_FAILURE)[-1].details["reason"] == "locked"


def _mails(runtime: Runtime) -> list[OutboxItem]:
    with runtime.session_factory() as db:
        return list(db.scalars(select(OutboxItem).where(OutboxItem.kind == "mail")))


def _alerts(runtime: Runtime) -> int:
    with runtime.session_factory() as db:
        return len(db.scalars(select(OutboxItem).where(
            OutboxItem.kind == LOGIN_FAILURE_ALERT)).all())
