"""``email_verified`` (OIDC Core §5.1) in ID tokens and userinfo, through the real provider
flow: a signed-up account gets no token before its address is verified, then ``true``; the
claim is read from the account when a token or userinfo answer is made, so ``false`` is
reported as soon as the account's address is not (or no longer) verified.

ID tokens are issued only at a sign-in (refreshing gives no new ID token), which an unverified
account cannot complete; the ID token's ``false`` is covered with the same claims function
in tests/unit/test_claims.py."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from sqlalchemy import select, update

from idp.accounts import AccountService
from idp.models import OutboxItem, User
from idp.runtime import Runtime
from idp.security.email_verification import EmailVerificationService
from tests.helpers import PASSWORD, create_user
from tests.oidc import Browser, RelyingParty, redirect_params, register_client

BOB = "bob@example.com"


def _signed_up(rt: Runtime) -> User:
    """An account as sign-up makes it: unverified, with a verification link in the outbox."""
    with rt.session_factory() as db:
        accounts = AccountService(db, rt.passwords)
        user = accounts.create_user(BOB, PASSWORD, first_name="Bob", email_verified=False)
        EmailVerificationService(db, rt.settings, accounts).start_email_verification(user)
        db.commit()
        return user


def _verification_path(rt: Runtime) -> str:
    """The newest verification link (signing in before verifying mails a new one)."""
    with rt.session_factory() as db:
        payloads = db.scalars(select(OutboxItem.payload).order_by(OutboxItem.id)).all()
    links = [p["context"]["verify_url"] for p in payloads if p.get("template") == "verify_email"]
    return urlsplit(str(links[-1])).path


def _sign_in(rp: RelyingParty, browser: Browser) -> tuple[requests.Response, str, str, str]:
    url, state, nonce, verifier = rp.authorization_url()
    return browser.follow(url, email=BOB), state, nonce, verifier


def test_a_signed_up_account_gets_tokens_only_after_verifying_then_true(
    live: tuple[str, Runtime],
) -> None:
    base, rt = live
    user = _signed_up(rt)
    rp = RelyingParty(base, register_client(rt))
    browser = Browser(base)
    login = browser.http.get(rp.authorization_url()[0], timeout=10)  # on to the sign-in form
    blocked = browser.sign_in_form(login, BOB, PASSWORD)
    # The right password, refused like a wrong one: no code issued.
    assert blocked.status_code == 200 and "Incorrect email or password." in blocked.text

    path = _verification_path(rt)
    page = browser.http.get(base + path, timeout=10)
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    done = browser.http.post(base + path, data={"csrf_token": token, "password": PASSWORD},
                             timeout=10, allow_redirects=False)
    assert done.status_code == 303

    response, state, nonce, verifier = _sign_in(rp, browser)
    got = redirect_params(response)
    assert got["state"] == state
    tokens = rp.exchange(got["code"], verifier)
    claims = rp.validate_id_token(tokens["id_token"], nonce)
    assert claims["sub"] == user.id and claims["email"] == BOB
    assert claims["email_verified"] is True
    info = rp.userinfo(tokens["access_token"]).json()
    assert info["email"] == BOB and info["email_verified"] is True


def test_the_claim_is_false_when_the_address_is_not_verified(
    live: tuple[str, Runtime],
) -> None:
    base, rt = live
    user = create_user(rt)  # an operator's account: verified
    rp = RelyingParty(base, register_client(rt))
    tokens, nonce = rp.sign_in(Browser(base))
    assert rp.validate_id_token(tokens["id_token"], nonce)["email_verified"] is True
    assert rp.userinfo(tokens["access_token"]).json()["email_verified"] is True
    # The address stops being vouched for (set directly here: no page does it today).
    with rt.session_factory() as db:
        db.execute(update(User).where(User.id == user.id).values(email_verified=False))
        db.commit()
    assert rp.userinfo(tokens["access_token"]).json()["email_verified"] is False
