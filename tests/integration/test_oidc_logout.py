"""Signing out, as relying services see it: RP-initiated logout (OIDC RP-Initiated Logout 1.0),
the revocation of the session's tokens, and back-channel logout tokens (OIDC Back-Channel
Logout 1.0) delivered through the outbox."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from sqlalchemy import select

from idp.models.outbox import OutboxItem
from idp.provider.logout import BACKCHANNEL_LOGOUT, LOGOUT_EVENT
from idp.runtime import Runtime
from idp.worker import build_worker
from tests.helpers import create_user, csrf_token
from tests.integration.conftest import Receiver
from tests.oidc import Browser, RelyingParty, redirect_params, register_client
from tests.services import free_port

Live = tuple[str, Runtime]
LOGGED_OUT = "https://rp.example/logged-out"


def end_session(browser: Browser, **params: str) -> requests.Response:
    return browser.http.get(
        browser.base + "/end-session?" + urlencode(params), allow_redirects=False, timeout=10
    )


def signed_in(browser: Browser) -> bool:
    """Whether idp still knows the browser: the account page shows instead of the login."""
    page = browser.http.get(browser.base + "/account", allow_redirects=False, timeout=10)
    return page.status_code == 200


def tampered(id_token: str) -> str:
    """The ID token with one claim changed and the original signature kept."""
    header, payload, signature = id_token.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def assert_tokens_dead(rp: RelyingParty, tokens: dict[str, Any]) -> None:
    assert rp.introspect(tokens["access_token"]).json() == {"active": False}
    userinfo = rp.userinfo(tokens["access_token"])
    assert userinfo.status_code == 401
    assert 'error="invalid_token"' in userinfo.headers["WWW-Authenticate"]
    assert rp.introspect(tokens["refresh_token"]).json() == {"active": False}
    refresh = rp.refresh(tokens["refresh_token"])
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def assert_tokens_alive(rp: RelyingParty, tokens: dict[str, Any]) -> None:
    assert rp.introspect(tokens["access_token"]).json()["active"] is True
    assert rp.userinfo(tokens["access_token"]).status_code == 200


# 11. RP-initiated logout ------------------------------------------------------------------


@pytest.mark.parametrize(
    "hint",
    [
        "tampered claims",
        "bad signature",
        "not a JWT",
        "an access token",
    ],
)
def test_a_tampered_id_token_hint_gets_an_error_page_and_keeps_the_session(
    live: Live, hint: str
) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, post_logout_redirect_uris=[LOGGED_OUT]))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)
    id_token = tokens["id_token"]
    bad = {
        "tampered claims": tampered(id_token),
        "bad signature": id_token[:-6] + ("BBBBBB" if id_token.endswith("AAAAAA") else "AAAAAA"),
        "not a JWT": "garbage",
        # Signed by us for this client and session, but not an ID token (RFC 8725 §3.11).
        "an access token": tokens["access_token"],
    }[hint]

    response = end_session(browser, id_token_hint=bad, post_logout_redirect_uri=LOGGED_OUT,
                           state="st-1")

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert signed_in(browser)
    assert_tokens_alive(rp, tokens)


def test_an_id_token_hint_for_another_client_than_client_id_is_refused(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, post_logout_redirect_uris=[LOGGED_OUT]))
    other = register_client(rt, "Other", post_logout_redirect_uris=[LOGGED_OUT])
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)

    response = end_session(browser, id_token_hint=tokens["id_token"], client_id=other.client_id,
                           post_logout_redirect_uri=LOGGED_OUT, state="st-4")

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert signed_in(browser)
    assert_tokens_alive(rp, tokens)


def test_a_valid_id_token_hint_and_registered_uri_redirect_there_with_state(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, post_logout_redirect_uris=[LOGGED_OUT]))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)

    response = end_session(browser, id_token_hint=tokens["id_token"],
                           post_logout_redirect_uri=LOGGED_OUT, state="st-2")

    assert response.status_code == 303, response.text[:300]
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == LOGGED_OUT
    assert parse_qs(location.query) == {"state": ["st-2"]}
    assert not signed_in(browser)
    assert_tokens_dead(rp, tokens)


@pytest.mark.parametrize(
    "uri", ["https://evil.example/logged-out", LOGGED_OUT + "/", "https://rp.example/cb"]
)
def test_an_unregistered_post_logout_redirect_uri_is_not_followed(live: Live, uri: str) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, post_logout_redirect_uris=[LOGGED_OUT]))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)

    response = end_session(browser, id_token_hint=tokens["id_token"],
                           post_logout_redirect_uri=uri, state="st-3")

    assert response.status_code in (200, 303, 400), response.status_code
    location = response.headers.get("Location", "")
    assert not location.startswith(uri.rstrip("/")), location
    assert location == "" or location.startswith("/") or location.startswith(base), location


def test_a_logout_request_without_a_hint_asks_the_user_first(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, post_logout_redirect_uris=[LOGGED_OUT]))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)

    response = end_session(browser, client_id=rp.rp.client_id)

    assert response.status_code == 200 and "Sign out?" in response.text
    assert signed_in(browser)
    assert_tokens_alive(rp, tokens)
    confirmed = browser.http.post(
        base + "/end-session",
        data={"csrf_token": csrf_token(response.text), "client_id": rp.rp.client_id},
        allow_redirects=False,
        timeout=10,
    )
    assert confirmed.status_code == 303
    assert not signed_in(browser)
    assert_tokens_dead(rp, tokens)


# 12. Logout revokes the session's tokens --------------------------------------------------


@pytest.mark.parametrize("way", ["end-session", "account page"])
def test_logging_out_makes_the_sessions_tokens_inactive(live: Live, way: str) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, post_logout_redirect_uris=[LOGGED_OUT]))
    other = RelyingParty(base, register_client(rt, "Other"))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)
    other_tokens, _ = other.sign_in(browser)  # same browser session, another client
    elsewhere, _ = rp.sign_in(Browser(base))  # another browser: another session
    assert_tokens_alive(rp, tokens)

    if way == "end-session":
        response = end_session(browser, id_token_hint=tokens["id_token"])
    else:
        page = browser.http.get(base + "/account", timeout=10)
        response = browser.http.post(
            base + "/logout",
            data={"csrf_token": csrf_token(page.text)},
            allow_redirects=False,
            timeout=10,
        )
    assert response.status_code == 303

    assert not signed_in(browser)
    assert_tokens_dead(rp, tokens)
    assert_tokens_dead(other, other_tokens)
    assert_tokens_alive(rp, elsewhere)


def test_logout_without_the_csrf_token_does_not_sign_out(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)

    response = browser.http.post(base + "/logout", allow_redirects=False, timeout=10)

    assert response.status_code in (400, 403)
    assert signed_in(browser)
    assert_tokens_alive(rp, tokens)


# 13. Back-channel logout ------------------------------------------------------------------


def _backchannel_items(rt: Runtime) -> list[OutboxItem]:
    with rt.session_factory() as db:
        return list(
            db.scalars(
                select(OutboxItem)
                .where(OutboxItem.kind == BACKCHANNEL_LOGOUT)
                .order_by(OutboxItem.id)
            )
        )


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_back_channel_logout_sends_a_valid_logout_token(
    live: Live, receiver: Receiver, alg: str
) -> None:
    base, rt = live
    user = create_user(rt)
    rp = RelyingParty(
        base, register_client(rt, backchannel_logout_uri=receiver.url, id_token_alg=alg)
    )
    bystander = RelyingParty(base, register_client(rt, "No back-channel"))
    browser = Browser(base)
    tokens, nonce = rp.sign_in(browser)
    bystander.sign_in(browser)
    id_claims = jwt.decode(tokens["id_token"], rp.keyset(), algorithms=[alg]).claims
    assert id_claims["nonce"] == nonce

    assert end_session(browser, id_token_hint=tokens["id_token"]).status_code == 303
    assert receiver.forms == []  # never on the user's request path
    build_worker(rt).run_once()

    assert len(receiver.forms) == 1
    assert receiver.content_types[0].startswith("application/x-www-form-urlencoded")
    (logout_token,) = receiver.forms[0]["logout_token"]
    # Validated as the client validates its ID tokens: with its registered algorithm only.
    decoded = jwt.decode(logout_token, rp.keyset(), algorithms=[alg])
    assert decoded.header["typ"] == "logout+jwt" and decoded.header["alg"] == alg
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": base},
        aud={"essential": True, "value": rp.rp.client_id},
        sub={"essential": True, "value": user.id},
        sid={"essential": True, "value": id_claims["sid"]},
        iat={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    assert decoded.claims["events"] == {LOGOUT_EVENT: {}}
    assert "nonce" not in decoded.claims
    [item] = _backchannel_items(rt)
    assert item.done_at is not None and item.attempts == 1
    build_worker(rt).run_once()
    assert len(receiver.forms) == 1  # delivered once only


def test_signing_out_after_a_re_authentication_ends_what_the_first_sign_in_started(
    live: Live, receiver: Receiver
) -> None:
    """A service asks for a fresh sign-in (prompt=login): the browser's session is replaced,
    the other services' tokens live on (the user is still signed in) until the user signs out,
    then they end too and each service hears of it with the sid it knows."""
    base, rt = live
    create_user(rt)
    wiki = RelyingParty(base, register_client(rt, "Wiki", backchannel_logout_uri=receiver.url))
    bank = RelyingParty(base, register_client(rt, "Bank"))
    browser = Browser(base)
    wiki_tokens, nonce = wiki.sign_in(browser)
    wiki_sid = wiki.validate_id_token(wiki_tokens["id_token"], nonce)["sid"]
    bank_tokens, nonce = bank.sign_in(browser, prompt="login")
    assert bank.validate_id_token(bank_tokens["id_token"], nonce)["sid"] != wiki_sid
    assert_tokens_alive(wiki, wiki_tokens)

    assert end_session(browser, id_token_hint=bank_tokens["id_token"]).status_code == 303
    build_worker(rt).run_once()

    assert_tokens_dead(bank, bank_tokens)
    assert_tokens_dead(wiki, wiki_tokens)
    (form,) = receiver.forms
    decoded = jwt.decode(form["logout_token"][0], wiki.keyset(), algorithms=["RS256"])
    assert decoded.claims["sid"] == wiki_sid and decoded.claims["aud"] == wiki.rp.client_id


def test_someone_else_signing_in_on_the_browser_signs_the_first_user_out(live: Live) -> None:
    base, rt = live
    create_user(rt)
    create_user(rt, "bob@example.com", first_name="Bob")
    wiki = RelyingParty(base, register_client(rt, "Wiki"))
    browser = Browser(base)
    alice_tokens, _ = wiki.sign_in(browser)
    url, state, _, verifier = wiki.authorization_url(prompt="login")
    got = redirect_params(browser.follow(url, email="bob@example.com"))
    assert got["state"] == state
    bob_tokens = wiki.exchange(got["code"], verifier)

    assert_tokens_dead(wiki, alice_tokens)
    assert_tokens_alive(wiki, bob_tokens)


@pytest.mark.parametrize("failure", ["HTTP 500", "port closed"])
def test_a_failing_back_channel_receiver_is_retried_later_and_logout_still_succeeds(
    live: Live, receiver: Receiver, failure: str
) -> None:
    base, rt = live
    create_user(rt)
    if failure == "HTTP 500":
        receiver.status = 500
        uri = receiver.url
    else:
        uri = f"http://127.0.0.1:{free_port()}/backchannel-logout"
    rp = RelyingParty(base, register_client(rt, backchannel_logout_uri=uri))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)

    assert end_session(browser, id_token_hint=tokens["id_token"]).status_code == 303
    assert not signed_in(browser)
    assert_tokens_dead(rp, tokens)
    started = datetime.now(UTC)
    build_worker(rt).run_once()

    [item] = _backchannel_items(rt)
    assert item.attempts == 1
    assert item.done_at is None and item.failed_at is None
    assert item.next_attempt_at > started
    assert item.last_error
    if failure == "HTTP 500":
        assert len(receiver.forms) == 1
    # Not due yet: another pass does not hammer the receiver.
    build_worker(rt).run_once()
    [item] = _backchannel_items(rt)
    assert item.attempts == 1
