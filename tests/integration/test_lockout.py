"""Lockout: exact counting under concurrency, durable locks, trusted devices, rate limits, and
unlocking by an organization admin, by the operator and by a secure self-service link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp import create_app
from idp.events import Actor, EventTag
from idp.models import OneTimeToken, OutboxItem, Role, User, utcnow
from idp.runtime import Runtime
from idp.security.lockout import LockoutService
from idp.worker import build_worker
from tests.conftest import empty_tables, make_settings, running_app
from tests.helpers import (
    count_verifications,
    create_user,
    csrf_token,
    events,
    login_form,
    sign_in,
)
from tests.integration.test_two_factor import _enable as _enable_two_factor
from tests.oidc import serve
from tests.services import free_port, idp_env, run_idp, runtime_env

WRONG = "not the right password at all"


def _set_threshold(rt: Runtime, email: str, threshold: int) -> None:
    with rt.session_factory() as db:
        db.execute(update(User).where(User.email_normalized == email).values(
            lockout_threshold=threshold))
        db.commit()


def _user(rt: Runtime, email: str = "alice@example.com") -> User:
    with rt.session_factory() as db:
        user = db.scalar(select(User).where(User.email_normalized == email))
        assert user is not None
        return user


def _failure_reasons(rt: Runtime) -> list[str]:
    return [e.details["reason"] for e in events(rt, EventTag.LOGIN_FAILURE)]


def _unlock_urls(rt: Runtime) -> list[str]:
    with rt.session_factory() as db:
        items = db.scalars(select(OutboxItem).where(OutboxItem.kind == "mail")
                           .order_by(OutboxItem.id)).all()
    return [str(i.payload["context"]["unlock_url"]) for i in items
            if "unlock_url" in i.payload.get("context", {})]


@pytest.fixture
def live(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[tuple[str, Runtime]]:
    port = free_port()
    app: Flask = create_app(make_settings(tmp_path, database_url=database_url,
                                          redis_url=redis_url,
                                          issuer=f"http://127.0.0.1:{port}",
                                          login_attempts_per_ip_per_minute=1000))
    rt: Runtime = app.extensions["idp"]
    try:
        with serve(app, port) as base:
            yield base, rt
    finally:
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()


def _attempt(base: str, password: str, email: str = "alice@example.com") -> int:
    browser = requests.Session()
    page = browser.get(base + "/login", timeout=30).text
    response = browser.post(base + "/login", timeout=30, allow_redirects=False, data={
        "csrf_token": csrf_token(page), "email": email, "password": password})
    return response.status_code


def test_parallel_wrong_passwords_verify_exactly_threshold_times_then_lock(
    live: tuple[str, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, rt = live
    create_user(rt)
    _set_threshold(rt, "alice@example.com", 5)
    verifications = count_verifications(rt, monkeypatch)
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: _attempt(base, WRONG), range(40)))
    assert statuses == [200] * 40  # every answer is the same generic page
    reasons = _failure_reasons(rt)
    assert reasons.count("bad_password") == 5  # exactly five passwords were verified
    assert reasons.count("locked") == 35
    # ... against the real hash; the 35 refused attempts cost the dummy's verification (as
    # for an unknown address), so no answer comes sooner for being refused.
    real = _user(rt).password_hash
    assert len(verifications) == 40 and verifications.count(real) == 5
    assert _user(rt).locked_at is not None
    assert len(events(rt, EventTag.ACCOUNT_LOCKED)) == 1
    assert len(_unlock_urls(rt)) == 1  # the owner is mailed once, at the moment of locking


def test_locked_account_refuses_the_right_password(client: FlaskClient,
                                                   runtime: Runtime) -> None:
    create_user(runtime)
    _set_threshold(runtime, "alice@example.com", 3)
    for _ in range(3):
        page = sign_in(client, password=WRONG).get_data(as_text=True)
        assert "Incorrect email or password." in page
        assert "Locked out? Unlock your account" in page
    locked = sign_in(client)
    assert locked.status_code == 200
    assert "Incorrect email or password." in locked.get_data(as_text=True)
    assert _failure_reasons(runtime)[-1] == "locked"
    # The lock is durable: forgetting the counters in the store changes nothing.
    runtime.store.delete_prefix()
    assert sign_in(client).status_code == 200


def test_a_locked_account_answers_after_the_same_work_as_an_unknown_address(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refusing a locked account without hashing would answer sooner than for an unknown
    address (which always costs one verification), telling that the account exists."""
    create_user(runtime)
    _set_threshold(runtime, "alice@example.com", 3)
    for _ in range(3):
        sign_in(client, password=WRONG)
    assert _user(runtime).locked_at is not None
    calls = count_verifications(runtime, monkeypatch)
    locked = sign_in(client, password=WRONG)
    unknown = sign_in(client, email="nobody@example.com", password=WRONG)
    assert len(calls) == 2  # one verification each, with the same argon2 parameters
    assert calls[0].split("$")[3] == calls[1].split("$")[3]
    assert _failure_reasons(runtime)[-2:] == ["locked", "unknown_account"]
    strip = re.compile(r'value="[^"]*"')  # the CSRF token and the echoed email differ
    assert strip.sub("", locked.get_data(as_text=True)) == strip.sub(
        "", unknown.get_data(as_text=True)
    )


def test_a_trusted_device_still_signs_in_while_the_account_is_locked(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    _set_threshold(runtime, "alice@example.com", 3)
    owner = app.test_client()
    assert sign_in(owner).status_code == 303  # the owner's browser becomes trusted
    owner.post("/logout", data={"csrf_token": csrf_token(owner.get("/account").get_data(
        as_text=True))})
    attacker = app.test_client()
    for _ in range(4):
        sign_in(attacker, password=WRONG)
    assert _user(runtime).locked_at is not None
    assert sign_in(attacker).status_code == 200  # locked for the attacker, right password too
    assert sign_in(owner).status_code == 303  # not for the owner's known browser
    # A forged or foreign trust cookie does not help.
    forger = app.test_client()
    forger.set_cookie("idp_trust", owner.get_cookie("idp_trust").value + "x")  # type: ignore[union-attr]
    assert sign_in(forger).status_code == 200


def test_a_new_password_withdraws_the_trust_of_browsers_that_signed_in_before(
    app: Flask, runtime: Runtime
) -> None:
    """An intruder who once signed in keeps a trusted browser; after the owner's password
    reset it must not give them their own attempt count on a locked account."""
    create_user(runtime)
    _set_threshold(runtime, "alice@example.com", 3)
    intruder = app.test_client()
    assert sign_in(intruder).status_code == 303
    new_password = "the owner's brand new passphrase"
    with runtime.session_factory() as db:  # what a reset or a change does to the account
        db.execute(update(User).values(password_hash=runtime.passwords.hash(new_password)))
        db.commit()
    for _ in range(3):
        sign_in(app.test_client(), password=WRONG)
    assert _user(runtime).locked_at is not None

    returning = app.test_client()  # the intruder's browser, its session gone, its trust kept
    trust = intruder.get_cookie("idp_trust")
    assert trust is not None
    returning.set_cookie("idp_trust", trust.value)
    assert sign_in(returning, password=new_password).status_code == 200  # locked for it too
    assert _failure_reasons(runtime)[-1] == "locked"


def test_successful_sign_in_resets_the_count(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    _set_threshold(runtime, "alice@example.com", 3)
    for _ in range(2):
        sign_in(client, password=WRONG)
    assert sign_in(client).status_code == 303
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/account").get_data(
        as_text=True))})
    other = client.application.test_client()
    for _ in range(2):
        sign_in(other, password=WRONG)
    assert _user(runtime).locked_at is None


def test_per_ip_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    app = create_app(make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                                   login_attempts_per_ip_per_minute=3))
    rt: Runtime = app.extensions["idp"]
    try:
        create_user(rt)
        client = app.test_client()
        for _ in range(3):
            assert sign_in(client, email="nobody@example.com").status_code == 200
        limited = sign_in(client)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert "Incorrect email or password." in limited.get_data(as_text=True)
        assert not events(rt, EventTag.LOGIN_SUCCESS)  # even the right password waits
    finally:
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()


def _lock(client: FlaskClient, runtime: Runtime, email: str = "alice@example.com") -> None:
    _set_threshold(runtime, email, 3)
    for _ in range(3):
        sign_in(client, email=email, password=WRONG)
    assert _user(runtime, email).locked_at is not None


def _use_link(client: FlaskClient, url: str, **form: str) -> Any:
    path = url.split("://", 1)[1].split("/", 1)[1]
    page = client.get("/" + path)
    if page.status_code != 200:
        return page
    return client.post("/" + path, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                         **form})


def test_unlock_link_works_once(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    _lock(client, runtime)
    (url,) = _unlock_urls(runtime)
    done = _use_link(client, url)
    assert done.status_code == 303 and "/login" in done.headers["Location"]
    assert _user(runtime).locked_at is None
    assert sign_in(client).status_code == 303
    assert len(events(runtime, EventTag.ACCOUNT_UNLOCKED)) == 1
    again = _use_link(client.application.test_client(), url)
    assert again.status_code == 400
    assert "invalid, has already been used, or has expired" in again.get_data(as_text=True)


def test_the_unlock_link_of_a_two_factor_account_asks_for_a_code_and_logs_wrong_ones(
    client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    secret, _ = _enable_two_factor(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    _lock(client, runtime)
    (url,) = _unlock_urls(runtime)
    wrong = _use_link(client, url, code="000000")
    assert wrong.status_code == 400 and "That code is not valid." in wrong.get_data(as_text=True)
    assert _user(runtime).locked_at is not None
    (failure,) = events(runtime, EventTag.SECOND_FACTOR_FAILURE)
    assert failure.user_id == user.id and failure.details == {"during": "unlock"}
    done = _use_link(client, url, code=f" {pyotp.TOTP(secret).now()} ")
    assert done.status_code == 303
    assert _user(runtime).locked_at is None


def test_expired_tampered_and_stale_unlock_links_are_refused(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    _lock(client, runtime)
    (url,) = _unlock_urls(runtime)
    assert _use_link(client, url + "x").status_code == 400  # tampered
    assert _use_link(client, url[:-4]).status_code == 400
    with runtime.session_factory() as db:
        db.execute(update(OneTimeToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert _use_link(client, url).status_code == 400  # expired
    assert _user(runtime).locked_at is not None
    # A link issued before a new lock does not unlock the new lock.
    with runtime.session_factory() as db:
        db.execute(update(OneTimeToken).values(expires_at=utcnow() + timedelta(minutes=30)))
        db.commit()
    run_self_service = client.post("/unlock", data={"csrf_token": login_form(client, "/unlock"),
                                                    "email": "alice@example.com"})
    assert run_self_service.status_code == 200
    build_worker(runtime).run_once()  # the worker issues the link of a request
    newest = _unlock_urls(runtime)[-1]
    assert _use_link(client, newest).status_code == 303  # unlocked
    _lock(client.application.test_client(), runtime)  # locked again: a new lock
    assert _use_link(client, url).status_code == 400  # the first lock's link is stale
    assert _user(runtime).locked_at is not None


def test_an_unlock_link_does_not_lift_a_lock_that_began_while_it_was_being_used(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link is checked against the current lock, then used: should the account be
    unlocked and locked again in between (a new lock), the link of the first lock is stale."""
    create_user(runtime)
    _lock(client, runtime)
    (url,) = _unlock_urls(runtime)
    find = LockoutService.find_unlock

    def relocked_meanwhile(service: LockoutService, token: str) -> tuple[OneTimeToken, User]:
        found = find(service, token)
        monkeypatch.setattr(LockoutService, "find_unlock", find)  # the page's check only
        with runtime.session_factory() as db:  # elsewhere: unlocked, then locked anew
            user = db.get(User, found[1].id)
            assert user is not None
            other = LockoutService(db, runtime.store, runtime.settings)
            assert other.unlock(user, Actor(), by="operator")
            other.lock(user, Actor())
            db.commit()
        return found

    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    page = client.get(path)
    monkeypatch.setattr(LockoutService, "find_unlock", relocked_meanwhile)
    used = client.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert used.status_code == 400
    assert _user(runtime).locked_at is not None  # the new lock stands
    assert len(events(runtime, EventTag.ACCOUNT_UNLOCKED)) == 1  # the one elsewhere only


def test_two_unlocks_of_one_lock_unlock_once(client: FlaskClient, runtime: Runtime) -> None:
    """Two admins (or an admin and the owner's link) at once: one unlock, one event, one
    mail; the later one finds the account no longer locked."""
    user = create_user(runtime)
    _lock(client, runtime)
    with runtime.session_factory() as first, runtime.session_factory() as second:
        one, two = first.get(User, user.id), second.get(User, user.id)
        assert one is not None and two is not None and two.locked_at is not None
        assert LockoutService(first, runtime.store, runtime.settings).unlock(
            one, Actor(), by="operator")
        first.commit()
        assert not LockoutService(second, runtime.store, runtime.settings).unlock(
            two, Actor(), by="operator")
        second.commit()
    assert len(events(runtime, EventTag.ACCOUNT_UNLOCKED)) == 1
    with runtime.session_factory() as db:
        assert db.get(User, user.id).lockout_epoch == 1  # type: ignore[union-attr]


def test_self_service_form_answers_the_same_for_any_address(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    create_user(runtime, "bob@example.com", first_name="Bob")
    _lock(client, runtime)
    before = len(_unlock_urls(runtime))
    pages = []
    for email in ("alice@example.com", "bob@example.com", "nobody@example.com"):
        response = client.post("/unlock", data={"csrf_token": login_form(client, "/unlock"),
                                                "email": email})
        assert response.status_code == 200
        pages.append(re.sub(r'value="[^"]*"', "", response.get_data(as_text=True)))
    assert pages[0] == pages[1] == pages[2]
    # Each request is one queued row, whatever the address: the same work for every answer.
    with runtime.session_factory() as db:
        queued = db.scalars(select(OutboxItem.payload).where(OutboxItem.kind == "unlock_request"))
        assert [p["email"] for p in queued] == [
            "alice@example.com", "bob@example.com", "nobody@example.com"]
    assert len(_unlock_urls(runtime)) == before  # nothing is sent from the request itself
    build_worker(runtime).run_once()
    assert len(_unlock_urls(runtime)) == before + 1  # only the locked account got a link


def test_the_unlock_form_says_how_long_the_link_works(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """The lifetime the page tells is the configured one (IDP_UNLOCK_LINK_MINUTES)."""
    with running_app(make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                                   unlock_link_minutes=45)) as app:
        browser = app.test_client()
        answer = browser.post("/unlock", data={"csrf_token": login_form(browser, "/unlock"),
                                               "email": "nobody@example.com"})
        assert answer.status_code == 200
        text = answer.get_data(as_text=True)
        assert "The link works once, for 45 minutes." in text and "30 minutes" not in text


def test_organization_admins_unlock_their_members_only(app: Flask, runtime: Runtime) -> None:
    create_user(runtime, "alice@example.com", organization="Acme")
    create_user(runtime, "admin@acme.example", organization="Acme", role=Role.ADMIN,
                first_name="Ada")
    create_user(runtime, "eve@evil.example", organization="Evil", role=Role.OWNER,
                first_name="Eve")
    create_user(runtime, "member@acme.example", organization="Acme", first_name="Max")
    _lock(app.test_client(), runtime)
    org_id = _org_id(runtime, "Acme")
    alice_id = _user(runtime).id
    path = f"/organizations/{org_id}/members"

    eve = app.test_client()
    sign_in(eve, email="eve@evil.example")
    assert eve.get(path).status_code == 403
    token = csrf_token(eve.get("/account").get_data(as_text=True))
    assert eve.post(f"{path}/{alice_id}/unlock", data={"csrf_token": token}).status_code == 403

    member = app.test_client()
    sign_in(member, email="member@acme.example")
    assert member.get(path).status_code == 403
    assert _user(runtime).locked_at is not None

    admin = app.test_client()
    sign_in(admin, email="admin@acme.example")
    page = admin.get(path)
    assert page.status_code == 200 and "alice@example.com" in page.get_data(as_text=True)
    done = admin.post(f"{path}/{alice_id}/unlock",
                      data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 303
    assert _user(runtime).locked_at is None
    (event,) = events(runtime, EventTag.ACCOUNT_UNLOCKED)
    assert event.details["by"] == "organization admin"
    # An admin cannot act on someone outside the organization.
    eve_id = _user(runtime, "eve@evil.example").id
    assert admin.post(f"{path}/{eve_id}/unlock", data={"csrf_token": csrf_token(
        page.get_data(as_text=True))}).status_code == 404


def test_unlocking_says_whether_the_member_was_locked_in_the_admins_language(
        app: Flask, runtime: Runtime) -> None:
    create_user(runtime, "alice@example.com", organization="Acme")
    create_user(runtime, "admin@acme.example", organization="Acme", role=Role.ADMIN,
                first_name="Ada")
    org_id = _org_id(runtime, "Acme")
    alice_id = _user(runtime).id
    path = f"/organizations/{org_id}/members"
    admin = app.test_client()
    sign_in(admin, email="admin@acme.example")
    mails = _outbox_count(runtime)

    token = csrf_token(admin.get(path).get_data(as_text=True))
    done = admin.post(f"{path}/{alice_id}/unlock", data={"csrf_token": token})
    assert done.status_code == 303
    page = admin.get(done.headers["Location"]).get_data(as_text=True)
    assert "That account was not locked: nothing was changed." in page
    assert "Unlocked." not in page
    assert events(runtime, EventTag.ACCOUNT_UNLOCKED) == []
    assert _outbox_count(runtime) == mails

    _lock(app.test_client(), runtime)
    with runtime.session_factory() as db:
        db.execute(update(User).where(User.email == "admin@acme.example").values(locale="fr"))
        db.commit()
    token = csrf_token(admin.get(path).get_data(as_text=True))
    done = admin.post(f"{path}/{alice_id}/unlock", data={"csrf_token": token})
    page = admin.get(done.headers["Location"]).get_data(as_text=True)
    assert "Déverrouillé." in page and "Unlocked." not in page
    assert _user(runtime).locked_at is None


def _outbox_count(rt: Runtime) -> int:
    with rt.session_factory() as db:
        return len(db.scalars(select(OutboxItem.id)).all())


def _org_id(rt: Runtime, name: str) -> str:
    from idp.models import Organization

    with rt.session_factory() as db:
        org = db.scalar(select(Organization).where(Organization.name == name))
        assert org is not None
        return org.id


def test_user_chooses_the_threshold_within_bounds(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    sign_in(client)
    page = client.get("/account/lockout").get_data(as_text=True)
    for bad in ("2", "51", "ten", "", "\u00b2", "\u0667", "9" * 5000):  # ², Arabic-Indic 7
        refused = client.post("/account/lockout", data={"csrf_token": csrf_token(page),
                                                         "threshold": bad})
        assert refused.status_code == 400
        assert "Enter a whole number." in refused.get_data(as_text=True) or bad in ("2", "51")
    assert _user(runtime).lockout_threshold is None
    saved = client.post("/account/lockout", data={"csrf_token": csrf_token(page),
                                                   "threshold": "7"})
    assert saved.status_code == 303
    assert _user(runtime).lockout_threshold == 7
    (event,) = events(runtime, EventTag.LOCKOUT_THRESHOLD_CHANGED)
    assert event.details == {"from": 10, "to": 7}


def test_organization_floor_limits_the_choice(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime, organization="Acme", role=Role.OWNER)
    sign_in(client)
    org_id = _org_id(runtime, "Acme")
    page = client.get(f"/organizations/{org_id}/members").get_data(as_text=True)
    for bad in ("\u00b2", "abc", "9" * 5000, "99"):
        refused = client.post(f"/organizations/{org_id}/lockout-floor", data={
            "csrf_token": csrf_token(page), "floor": bad})
        assert refused.status_code == 400 and "Choose a number from" in refused.get_data(
            as_text=True), bad
    assert client.post(f"/organizations/{org_id}/lockout-floor", data={
        "csrf_token": csrf_token(page), "floor": "6"}).status_code == 303
    lockout_page = client.get("/account/lockout").get_data(as_text=True)
    assert client.post("/account/lockout", data={"csrf_token": csrf_token(lockout_page),
                                                  "threshold": "5"}).status_code == 400
    assert client.post("/account/lockout", data={"csrf_token": csrf_token(lockout_page),
                                                  "threshold": "6"}).status_code == 303


def test_the_command_unlocks_a_server_whose_store_is_in_process(tmp_path: Path,
                                                                database_url: str) -> None:
    """Without IDP_REDIS_URL the server and ``idp user unlock`` each have their own
    in-process store: the unlock, recorded in the database, still gives the account a fresh
    count on the server."""
    settings = make_settings(tmp_path, database_url=database_url, redis_url="")
    app = create_app(settings)
    app.config["TESTING"] = True
    rt: Runtime = app.extensions["idp"]
    try:
        client = app.test_client()
        create_user(rt)
        _lock(client, rt)
        env = idp_env(database_url=database_url, data_dir=str(tmp_path / "cli"),
                      secret_key=settings.secret_key)
        result = run_idp("user", "unlock", "alice@example.com", env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "unlocked alice@example.com"
        assert sign_in(client).status_code == 303
        # and counting starts again from zero: three more failures lock it again
        client = app.test_client()
        for _ in range(3):
            sign_in(client, password=WRONG)
        assert _user(rt).locked_at is not None
        assert _failure_reasons(rt)[-3:] == ["bad_password"] * 3
    finally:
        empty_tables(rt)
        rt.close()


def test_operator_unlocks_with_the_command(tmp_path: Path, client: FlaskClient,
                                          runtime: Runtime) -> None:
    create_user(runtime)
    _lock(client, runtime)
    env = runtime_env(runtime.settings, tmp_path / "cli")
    result = run_idp("user", "unlock", "ALICE@example.com", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unlocked alice@example.com"
    assert _user(runtime).locked_at is None
    assert sign_in(client).status_code == 303
    missing = run_idp("user", "unlock", "nobody@example.com", env=env)
    assert missing.returncode != 0 and missing.stderr.strip() == (
        "idp: no user with email nobody@example.com")

