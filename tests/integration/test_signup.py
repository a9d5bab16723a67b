"""Sign-up and email verification, with mail over real SMTP: the account signs in only after
its address is verified by a single-use link; an existing address gets the same page and its
owner a notice; SSO-enforced domains go to their organization's Entra ID; the setting is off by
default; ``idp user create --unverified``."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from idp.accounts import AccountService
from idp.events import EventTag
from idp.models import Event, OneTimeToken, OutboxItem, User, UserSession, utcnow
from idp.runtime import Runtime
from idp.signup import SignupRequestHandler
from tests.conftest import make_settings, running_app
from tests.helpers import PASSWORD, count, create_user, csrf_token, events, sign_in
from tests.integration.test_password_reset import _deliver, _text, _without_csrf
from tests.mailserver import MailServer
from tests.oidc import hidden_fields, register_client
from tests.services import idp_env, run_idp
from tests.sso import CLIENT_ID, TID, World, make_world

BOB = "bob@example.com"
_VERIFY = re.compile(r"(http://\S+/verify-email/[A-Za-z0-9_-]+)")


@contextmanager
def _app(tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer,
         **overrides: Any) -> Iterator[Flask]:
    values: dict[str, Any] = {**{"signup_enabled": True}, **overrides}
    with running_app(make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                                   smtp_url=smtp.url, **values)) as app:
        yield app


@pytest.fixture
def signup_app(tmp_path: Path, database_url: str, redis_url: str,
            smtp: MailServer) -> Iterator[Flask]:
    with _app(tmp_path, database_url, redis_url, smtp) as app:
        yield app


@pytest.fixture
def rt(signup_app: Flask) -> Runtime:
    runtime: Runtime = signup_app.extensions["idp"]
    return runtime


@pytest.fixture
def browser(signup_app: Flask) -> FlaskClient:
    return signup_app.test_client()


def sign_up(client: FlaskClient, email: str = BOB, password: str = PASSWORD,
            first_name: str = "Bob", again: str | None = None) -> TestResponse:
    page = client.get("/signup")
    assert page.status_code == 200
    return client.post("/signup", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "email": email,
        "first_name": first_name, "last_name": "Builder", "password": password,
        "password_again": password if again is None else again})


def verification_links(rt: Runtime, smtp: MailServer, email: str = BOB) -> list[str]:
    """Every verification link mailed to ``email`` so far (after the worker is idle)."""
    _deliver(rt)
    return [m.group(1) for message in smtp.to(email)
            if str(message["Subject"]) == "Verify your email address"
            for m in [_VERIFY.search(_text(message))] if m]


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def verify(client: FlaskClient, url: str, password: str = PASSWORD) -> TestResponse:
    page = client.get(_path(url))
    if page.status_code != 200:
        return page
    return client.post(_path(url), data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                         "password": password})


def _user(rt: Runtime, email: str = BOB) -> User | None:
    with rt.session_factory() as db:
        return db.scalar(select(User).where(User.email_normalized == email))


def test_sign_up_is_off_by_default(client: FlaskClient) -> None:
    assert client.get("/signup").status_code == 404
    assert client.post("/signup", data={}).status_code in (400, 404)  # CSRF first, or 404
    assert "Create an account" not in client.get("/login").get_data(as_text=True)


def test_sign_up_then_verify_then_sign_in(browser: FlaskClient, rt: Runtime,
                                          smtp: MailServer) -> None:
    login = browser.get("/login").get_data(as_text=True)
    assert 'href="/signup">Create an account</a>' in login
    form = browser.get("/signup").get_data(as_text=True)
    for field, autocomplete in (("email", "email"), ("password", "new-password"),
                                ("password-again", "new-password")):
        assert f'<label for="{field}">' in form
        assert re.search(rf'id="{field}"[^>]*autocomplete="{autocomplete}"', form), field
    done = sign_up(browser)
    assert done.status_code == 200
    assert "Check your inbox" in done.get_data(as_text=True)
    assert _user(rt) is None  # the worker makes the account
    _deliver(rt)
    user = _user(rt)
    assert user is not None and not user.email_verified and user.first_name == "Bob"
    (first,) = verification_links(rt, smtp)

    # Before verifying: the right password is answered exactly like a wrong one (anyone can
    # sign up with any address and a password of their choosing), and starts no session.
    blocked = sign_in(browser, email=BOB)
    wrong = sign_in(browser, email=BOB, password="not the password at all")
    assert blocked.status_code == wrong.status_code == 200
    page = blocked.get_data(as_text=True)
    assert _without_csrf(page) == _without_csrf(wrong.get_data(as_text=True))
    assert "Incorrect email or password." in page
    assert "Just created your account? First open the link we emailed you" in page
    assert count(rt, UserSession) == 0
    assert browser.get("/account").status_code == 303
    reasons = [e.details["reason"] for e in events(rt, EventTag.LOGIN_FAILURE)]
    assert reasons == ["email_unverified", "bad_password"]
    # The right password mailed a new link instead, which supersedes the first.
    first_again, url = verification_links(rt, smtp)
    assert first_again == first
    assert verify(browser, first).status_code == 400

    page = browser.get(_path(url))  # opening the link verifies nothing by itself
    assert page.status_code == 200 and "Verify my email address" in page.get_data(as_text=True)
    assert not _user(rt).email_verified  # type: ignore[union-attr]
    verified = verify(browser, url)
    assert verified.status_code == 303 and verified.headers["Location"] == "/login?verified=1"
    assert _user(rt).email_verified  # type: ignore[union-attr]
    assert len(events(rt, EventTag.EMAIL_VERIFIED)) == 1
    assert sign_in(browser, email=BOB).status_code == 303
    assert browser.get("/account").status_code == 200
    # The link worked once.
    again = verify(browser.application.test_client(), url)
    assert again.status_code == 400 and "already been used" in again.get_data(as_text=True)


def test_signing_up_an_existing_address_then_signing_in_tells_nothing(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    """The attack: sign up an address with a password of one's own, then sign in with it. The
    answer must be the same whether the sign-up made the account or the address had one."""
    create_user(rt, "carol@example.com")  # verified, with another password
    for address in ("carol@example.com", "dave@example.com"):
        assert sign_up(browser, email=address, password=PASSWORD + " mine").status_code == 200
    _deliver(rt)
    assert _user(rt, "dave@example.com") is not None  # the sign-up made this one
    answers = [sign_in(browser, email=address, password=PASSWORD + " mine")
               for address in ("carol@example.com", "dave@example.com")]
    assert [a.status_code for a in answers] == [200, 200]
    pages = [_without_csrf(a.get_data(as_text=True)) for a in answers]
    assert pages[0].replace("carol@", "dave@") == pages[1]
    assert count(rt, UserSession) == 0


def test_a_wrong_password_sends_no_new_link(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    sign_up(browser)
    _deliver(rt)
    sign_in(browser, email=BOB, password="not the password at all")
    assert len(verification_links(rt, smtp)) == 1


def test_a_tampered_or_expired_verification_link_is_refused(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    sign_up(browser)
    (url,) = verification_links(rt, smtp)
    assert verify(browser, url[:-1] + ("A" if url[-1] != "A" else "B")).status_code == 400
    with rt.session_factory() as db:
        db.execute(update(OneTimeToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert verify(browser, url).status_code == 400
    assert not _user(rt).email_verified  # type: ignore[union-attr]


def test_an_existing_address_gets_the_same_page_and_its_owner_a_notice(
    signup_app: Flask, rt: Runtime, smtp: MailServer
) -> None:
    owner = create_user(rt, "carol@example.com", first_name="Carol")
    known = sign_up(signup_app.test_client(), email="carol@example.com",
                    password="another long passphrase")
    new = sign_up(signup_app.test_client(), email="dave@example.com",
                  password="another long passphrase")
    assert known.status_code == new.status_code == 200
    assert _without_csrf(known.get_data(as_text=True)).replace("carol@", "x@") == \
        _without_csrf(new.get_data(as_text=True)).replace("dave@", "x@")
    _deliver(rt)
    (notice,) = smtp.to("carol@example.com")
    assert str(notice["Subject"]) == "Someone tried to create an account with your email address"
    assert "/password/forgot" in _text(notice)
    assert sign_in(signup_app.test_client(), email="carol@example.com").status_code == 303
    (attempt,) = events(rt, EventTag.SIGNUP_EXISTING_ADDRESS)
    assert attempt.user_id == owner.id
    assert count(rt, User) == 2  # carol and the new dave; nothing else


def _outbox(rt: Runtime) -> list[OutboxItem]:
    with rt.session_factory() as db:
        return list(db.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def test_the_request_only_queues_the_same_row_for_new_and_existing_addresses(
    signup_app: Flask, rt: Runtime, smtp: MailServer
) -> None:
    create_user(rt, "carol@example.com", first_name="Carol")
    before = count(rt, Event)
    sign_up(signup_app.test_client(), email="carol@example.com", password="a secret phrase one")
    sign_up(signup_app.test_client(), email="dave@example.com", password="a secret phrase two")
    # Nothing but one outbox row each on the request path: no account, no event, no mail yet.
    assert count(rt, Event) == before and count(rt, User) == 1
    known, new = _outbox(rt)
    assert known.kind == new.kind == "signup_request"
    assert sorted(known.payload) == sorted(new.payload)
    for item, plain in ((known, "a secret phrase one"), (new, "a secret phrase two")):
        assert item.payload["password_hash"].startswith("$argon2id$")
        assert plain not in str(item.payload)  # the hash, never the password
    _deliver(rt)
    dave = _user(rt, "dave@example.com")
    assert dave is not None and not dave.email_verified and dave.created_by_signup
    assert rt.passwords.verify(dave.password_hash or "", "a secret phrase two")
    (created,) = events(rt, EventTag.USER_CREATED)[-1:]
    assert created.user_id == dave.id and created.details == {"via": "signup"}
    assert [str(m["Subject"]) for m in smtp.to("dave@example.com")] == [
        "Verify your email address"]
    # Once handled, the outbox keeps no password hash.
    assert all("password_hash" not in item.payload for item in _outbox(rt))


def test_a_sign_up_handled_twice_does_nothing_the_second_time(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    sign_up(browser)
    (item,) = _outbox(rt)
    handler = SignupRequestHandler(rt.session_factory, rt.settings, rt.passwords)
    assert handler({**item.payload, "outbox_id": item.id}) is None
    # A worker that died before marking the row done: the row is delivered again, without
    # its hash, and neither a second account nor a "someone tried" notice follows.
    handled = _outbox(rt)[0]
    assert handled.kind == "signup_request"
    handler({**handled.payload, "outbox_id": handled.id})
    _deliver(rt)
    assert count(rt, User) == 1
    assert [str(m["Subject"]) for m in smtp.to(BOB)] == ["Verify your email address"]
    assert events(rt, EventTag.SIGNUP_EXISTING_ADDRESS) == []


def test_two_sign_ups_racing_for_one_address_make_one_account(
    signup_app: Flask, rt: Runtime, smtp: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_up(signup_app.test_client(), password="the first passphrase")
    sign_up(signup_app.test_client(), password="the second passphrase")
    first, second = _outbox(rt)
    handler = SignupRequestHandler(rt.session_factory, rt.settings, rt.passwords)
    handler({**first.payload, "outbox_id": first.id})
    # The second looks the address up before the first committed (simulated): its INSERT
    # meets the unique constraint, and it is handled as "the address exists".
    looked_up: list[str] = []
    real = AccountService.find_user_by_email

    def racing(self: AccountService, email: str) -> User | None:
        looked_up.append(email)
        return None if len(looked_up) == 1 else real(self, email)

    monkeypatch.setattr(AccountService, "find_user_by_email", racing)
    handler({**second.payload, "outbox_id": second.id})
    monkeypatch.undo()
    assert len(looked_up) == 2
    assert count(rt, User) == 1
    user = _user(rt)
    assert user is not None and rt.passwords.verify(user.password_hash or "",
                                                    "the first passphrase")
    _deliver(rt)
    assert sorted(str(m["Subject"]) for m in smtp.to(BOB)) == [
        "Someone tried to create an account with your email address",
        "Verify your email address"]
    (attempt,) = events(rt, EventTag.SIGNUP_EXISTING_ADDRESS)
    assert attempt.user_id == user.id
    assert all("password_hash" not in item.payload for item in _outbox(rt))


def _authorization_request(rt: Runtime) -> str:
    rp = register_client(rt)  # first-party: no consent page
    return "/authorize?" + urlencode({
        "client_id": rp.client_id, "response_type": "code", "scope": "openid email",
        "redirect_uri": rp.redirect_uri, "state": "st&te", "nonce": "n0nce"})


def _link(page: str, link_id: str) -> str:
    found = re.search(rf'id="{link_id}" href="([^"]+)"', page)
    assert found is not None, link_id
    return html.unescape(found.group(1))


def _next_of(location: str) -> str | None:
    values = parse_qs(urlsplit(location).query).get("next")
    return values[0] if values else None


def test_a_sign_up_from_a_relying_service_returns_to_it(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    to_login = browser.get(_authorization_request(rt))
    assert to_login.status_code in (302, 303)
    authorize = _next_of(to_login.headers["Location"])  # the request, as the endpoint put it
    assert authorize is not None and authorize.startswith("/authorize?")
    login = browser.get(to_login.headers["Location"]).get_data(as_text=True)
    signup = browser.get(_link(login, "signup-link")).get_data(as_text=True)
    assert hidden_fields(signup)["next"] == authorize
    done = browser.post("/signup", data={
        **hidden_fields(signup), "email": BOB, "first_name": "Bob", "last_name": "Builder",
        "password": PASSWORD, "password_again": PASSWORD})
    assert done.status_code == 200
    (first,) = verification_links(rt, smtp)
    assert "authorize" not in first  # kept with the link, not in the mailed URL
    with rt.session_factory() as db:
        assert db.scalar(select(OneTimeToken.return_to)) == authorize

    # Signing in before verifying: the new link it mails keeps the way back too.
    blocked = sign_in(browser, email=BOB, next_url=authorize)
    assert blocked.status_code == 200
    assert hidden_fields(blocked.get_data(as_text=True))["next"] == authorize
    _, second = verification_links(rt, smtp)

    verified = verify(browser, second)
    assert verified.status_code == 303
    assert verified.headers["Location"].startswith("/login?verified=1&")
    assert _next_of(verified.headers["Location"]) == authorize
    login = browser.get(verified.headers["Location"]).get_data(as_text=True)
    assert hidden_fields(login)["next"] == authorize
    signed_in = sign_in(browser, email=BOB, next_url=hidden_fields(login)["next"])
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == authorize
    back = browser.get(authorize)  # the authorization request goes on: a code for the RP
    assert back.status_code in (302, 303)
    assert back.headers["Location"].startswith("https://rp.example/cb?code=")


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_a_next_to_another_origin_is_not_kept(
    browser: FlaskClient, rt: Runtime, smtp: MailServer, target: str
) -> None:
    page = browser.get("/signup", query_string={"next": target}).get_data(as_text=True)
    assert "next" not in hidden_fields(page)
    browser.post("/signup", data={
        "csrf_token": csrf_token(page), "email": BOB, "first_name": "Bob",
        "password": PASSWORD, "password_again": PASSWORD, "next": target})
    (url,) = verification_links(rt, smtp)
    with rt.session_factory() as db:
        assert db.scalar(select(OneTimeToken.return_to)) is None
    verified = verify(browser, url)
    assert verified.status_code == 303 and verified.headers["Location"] == "/login?verified=1"


def test_the_form_explains_what_to_correct(browser: FlaskClient, rt: Runtime) -> None:
    cases = [({"email": "not-an-email"}, "valid email address"),
             ({"email": "a,b@example.com"}, "valid email address"),
             ({"first_name": ""}, "first name"),
             ({"first_name": "\u200b \u00a0"}, "contains characters that cannot be shown"),
             ({"first_name": " \u3000 "}, "Enter your first name."),
             ({"first_name": "Bo\x01b"}, "The first name contains characters that cannot be"),
             ({"password": "short"}, "at least 12"),
             ({"again": "something else entirely"}, "not the same"),
             ({"email": "robert@example.com", "password": "robert has a password"}, "email")]
    for kwargs, message in cases:
        refused = sign_up(browser, **kwargs)
        assert refused.status_code == 400, kwargs
        assert message in refused.get_data(as_text=True), kwargs
    assert count(rt, User) == 0


def test_sign_up_is_limited_per_address(
    tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer
) -> None:
    with _app(tmp_path, database_url, redis_url, smtp,
              email_requests_per_address_per_hour=2) as app:
        rt: Runtime = app.extensions["idp"]
        create_user(rt, "carol@example.com")
        statuses = [sign_up(app.test_client(), email="carol@example.com").status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 429]
        _deliver(rt)
        assert len(smtp.to("carol@example.com")) == 2


def test_new_links_from_signing_in_are_limited_with_the_other_mail_forms(
    tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer
) -> None:
    with _app(tmp_path, database_url, redis_url, smtp,
              email_requests_per_address_per_hour=2) as app:
        rt: Runtime = app.extensions["idp"]
        browser = app.test_client()
        assert sign_up(browser).status_code == 200  # the address's first mail
        _deliver(rt)
        answers = [sign_in(browser, email=BOB).status_code for _ in range(3)]
        assert answers == [200, 200, 200]  # past the limit: nothing sent, nothing said
        assert len(verification_links(rt, smtp)) == 2


@pytest.fixture
def world(tmp_path: Path, database_url: str, redis_url: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(tmp_path, database_url, redis_url, monkeypatch) as w:
        w.runtime.settings = dataclasses.replace(w.runtime.settings, signup_enabled=True)
        yield w


def test_an_sso_enforced_domain_goes_to_its_organization_instead(world: World) -> None:
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], enforce_sso=True)
    response = sign_up(world.client, email="newbie@contoso.com")
    assert response.status_code == 303
    assert response.headers["Location"].startswith(world.fake.authorization_endpoint(TID))
    assert count(world.runtime, User) == 0
    assert count(world.runtime, OutboxItem) == 0
    # Not enforced: an ordinary sign-up.
    assert sign_up(world.client, email="someone@fabrikam.com").status_code == 200
    # "Forgot your password?" too: its members have no password here.
    page = world.client.get("/password/forgot").get_data(as_text=True)
    forgot = world.client.post("/password/forgot", data={
        "csrf_token": csrf_token(page), "email": "ada@contoso.com"})
    assert forgot.status_code == 303
    assert forgot.headers["Location"].startswith(world.fake.authorization_endpoint(TID))


def test_idp_user_create_unverified_mails_a_link(tmp_path: Path, database_url: str) -> None:
    from sqlalchemy import delete

    from idp.db import make_engine
    from idp.models import Base

    env = idp_env(database_url=database_url, data_dir=str(tmp_path / "var"),
                  secret_key="the-servers-secret-key-0123456789-abcdefghijklmnop",
                  argon2_memory_kib="1024", argon2_time_cost="1")
    try:
        plain = run_idp("user", "create", "op@example.com", "--password-stdin", "--json",
                        env=env, stdin=PASSWORD + "\n")
        assert plain.returncode == 0, plain.stderr
        assert '"email_verified": true' in plain.stdout
        made = run_idp("user", "create", "imported@example.com", "--password-stdin",
                       "--unverified", "--json", env=env, stdin=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
        assert '"email_verified": false' in made.stdout
        engine = make_engine(database_url)
        with engine.connect() as conn:
            verified = dict(conn.execute(select(User.email_normalized, User.email_verified)).all())
            assert verified == {"op@example.com": True, "imported@example.com": False}
            mails = [p["template"] for p in conn.scalars(select(OutboxItem.payload))]
            assert mails == ["verify_email"]
            assert conn.scalar(select(Event.id).where(Event.action == "account:user:create"))
        engine.dispose()
        duplicate = run_idp("user", "create", "imported@example.com", "--password-stdin",
                            "--unverified", env=env, stdin=PASSWORD + "\n")
        assert duplicate.returncode != 0
        assert duplicate.stderr.strip().count("\n") == 0 and "already exists" in duplicate.stderr
    finally:
        engine = make_engine(database_url)
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(delete(table))
        engine.dispose()


def test_the_verification_mail_carries_no_words_of_whoever_signed_up(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    """Anyone can make idp mail any address by signing it up: the name they type must not
    reach that mailbox in our mail."""
    sign_up(browser, first_name="Your account is suspended, visit evil.example")
    verification_links(rt, smtp)
    (mail,) = smtp.to(BOB)
    text = _text(mail)
    assert "evil.example" not in text and "suspended" not in text
    assert f"Hello {BOB}," in text


def test_verifying_needs_the_password_of_the_account(
    browser: FlaskClient, rt: Runtime, smtp: MailServer
) -> None:
    """Pre-account hijacking: someone signs up another person's address with a password of
    their own; the owner, mailed the link, must not be able to verify that account by a
    click (it would leave a verified account at their address that someone else holds)."""
    sign_up(browser)
    (url,) = verification_links(rt, smtp)
    owner = browser.application.test_client()  # the mailbox's owner, who never signed up
    page = owner.get(_path(url)).get_data(as_text=True)
    assert 'name="password" type="password"' in page
    assert "If you did not create an account, do not verify it" in page
    for password in ("", "what the owner might guess"):
        refused = verify(owner, url, password=password)
        assert refused.status_code == 400
        assert "That is not the password of this account." in refused.get_data(as_text=True)
    assert not _user(rt).email_verified  # type: ignore[union-attr]
    assert events(rt, EventTag.EMAIL_VERIFIED) == []
    assert verify(browser, url).status_code == 303  # the one who chose the password
    assert _user(rt).email_verified  # type: ignore[union-attr]


def _input(page: str, field_id: str) -> str:
    match = re.search(rf'<input id="{field_id}"[^>]*>', page)
    assert match, field_id
    return match.group(0)


@pytest.mark.parametrize(("kwargs", "field_id"), [
    ({"email": "not-an-address"}, "email"),
    ({"first_name": ""}, "first-name"),
    ({"password": "short"}, "password"),
    ({"again": "something else entirely"}, "password-again"),
])
def test_a_refused_sign_up_ties_the_message_to_its_field(
    browser: FlaskClient, kwargs: dict[str, str], field_id: str
) -> None:
    refused = sign_up(browser, **kwargs)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 400 and 'role="alert" id="signup-error"' in page
    tied = _input(page, field_id)
    assert 'aria-invalid="true"' in tied and "signup-error" in tied and "autofocus" in tied
    if field_id == "password":
        assert 'aria-describedby="signup-error password-rules"' in tied
    for other in ("email", "first-name", "last-name", "password", "password-again"):
        if other != field_id:
            assert "aria-invalid" not in _input(page, other)
            assert "autofocus" not in _input(page, other)
            assert "signup-error" not in _input(page, other)
