"""What a relying service (or the person at the browser) notices when a rule of the OpenID
Connect provider is broken: one test per rule, black-box through HTTP.

The provider must refuse, with the error code the specs name, every request it cannot trust,
and revoke what a replayed or stolen credential could still reach.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import update

from idp.events import EventTag
from idp.models import UserSession
from idp.models.clients import Consent
from idp.provider.keys import KeyService
from idp.provider.tokens import Principal, TokenService
from idp.runtime import Runtime
from idp.security.devices import hash_key
from tests.helpers import PASSWORD, count, create_user, events
from tests.oidc import Browser, RegisteredRP, RelyingParty, redirect_params, register_client

Live = tuple[str, Runtime]


# Helpers ----------------------------------------------------------------------------------


def open_page(browser: Browser, url: str) -> requests.Response:
    """GET ``url`` and follow redirects that stay within idp, filling in nothing: the page
    the person would see, or the redirect that leaves idp."""
    response = browser.http.get(url, allow_redirects=False, timeout=10)
    for _ in range(10):
        if response.status_code not in (301, 302, 303):
            return response
        target = urljoin(response.url, response.headers["Location"])
        if not target.startswith(browser.base):
            return response
        response = browser.http.get(target, allow_redirects=False, timeout=10)
    raise AssertionError("too many redirects")


def is_login_form(response: requests.Response) -> bool:
    return response.status_code == 200 and 'name="password"' in response.text


def is_consent_page(response: requests.Response) -> bool:
    return response.status_code == 200 and 'name="decision"' in response.text


def leaves_to(response: requests.Response, redirect_uri: str) -> dict[str, str]:
    """The parameters of a redirect to ``redirect_uri`` (asserting it is one)."""
    assert response.status_code in (302, 303), (response.status_code, response.text[:300])
    location = response.headers["Location"]
    assert location.split("?", 1)[0] == redirect_uri, location
    return redirect_params(response)


def all_params(response: requests.Response) -> dict[str, list[str]]:
    return parse_qs(urlsplit(response.headers["Location"]).query)


def authorize_code(rp: RelyingParty, browser: Browser, **params: str) -> tuple[str, str, str]:
    """Run the authorization request to the code: (code, code_verifier, nonce)."""
    url, state, nonce, verifier = rp.authorization_url(**params)
    got = leaves_to(browser.follow(url), rp.rp.redirect_uri)
    assert got.get("state") == state and "code" in got, got
    return got["code"], verifier, nonce


def client_auth(rp: RegisteredRP) -> tuple[str, str] | None:
    return (rp.client_id, rp.client_secret) if rp.client_secret else None


def token_request(
    rp: RelyingParty, data: dict[str, str], auth: tuple[str, str] | None = None
) -> requests.Response:
    if rp.rp.client_secret is None:
        data = {"client_id": rp.rp.client_id, **data}
    return requests.post(
        rp.base + "/token", data=data, auth=auth or client_auth(rp.rp), timeout=10
    )


def redeem(rp: RelyingParty, code: str, verifier: str | None) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.rp.redirect_uri,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return token_request(rp, data)


def assert_oauth_error(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.json()["error"] == error, response.text
    assert "no-store" in response.headers.get("Cache-Control", "")


def is_active(rp: RelyingParty, token: str) -> bool:
    response = rp.introspect(token)
    assert response.status_code == 200, response.text
    active: bool = response.json()["active"]
    return active


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _part(segment: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return data


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a JWS, without checking it: what an attacker can read."""
    header, payload, _ = token.split(".")
    return _part(header), _part(payload)


# 1. Redirect URIs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrong_uri",
    [
        "https://evil.example/cb",
        "https://rp.example/cb/",
        "https://RP.example/cb",
        "https://rp.example/CB",
        "https://rp.example/cb?next=x",
        "https://rp.example:443/cb",
    ],
)
def test_a_redirect_uri_not_registered_byte_for_byte_is_never_redirected_to(
    live: Live, wrong_uri: str
) -> None:
    base, rt = live
    create_user(rt)
    registered = register_client(rt)
    browser = Browser(base)
    # Signed in, so a code would be issued at once if the redirect URI were accepted.
    authorize_code(RelyingParty(base, registered), browser)

    url, *_ = RelyingParty(base, replace(registered, redirect_uri=wrong_uri)).authorization_url()
    response = browser.http.get(url, allow_redirects=False, timeout=10)

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert "cannot be handled" in response.text


def test_an_unknown_client_or_a_missing_redirect_uri_gets_an_error_page(live: Live) -> None:
    base, rt = live
    registered = register_client(rt)
    browser = Browser(base)
    unknown = RelyingParty(base, replace(registered, client_id="no-such-client"))
    url, *_ = unknown.authorization_url()
    response = browser.http.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 400 and "Location" not in response.headers

    query = {"response_type": "code", "client_id": registered.client_id, "scope": "openid"}
    response = browser.http.get(
        base + "/authorize?" + urlencode(query), allow_redirects=False, timeout=10
    )
    assert response.status_code == 400 and "Location" not in response.headers


# 2. PKCE at the authorization endpoint ----------------------------------------------------


def test_a_public_client_without_pkce_gets_invalid_request_at_its_redirect_uri(
    live: Live,
) -> None:
    base, rt = live
    create_user(rt)
    mobile = register_client(rt, "Mobile", public=True, redirect_uri="http://127.0.0.1:9/cb")
    query = {
        "response_type": "code",
        "client_id": mobile.client_id,
        "redirect_uri": mobile.redirect_uri,
        "scope": "openid",
        "state": "s-1",
    }
    response = Browser(base).http.get(
        base + "/authorize?" + urlencode(query), allow_redirects=False, timeout=10
    )

    got = leaves_to(response, mobile.redirect_uri)
    assert got["error"] == "invalid_request"
    assert got["state"] == "s-1" and got["iss"] == base
    assert "code" not in got


@pytest.mark.parametrize("public", [True, False])
def test_the_plain_code_challenge_method_is_refused(live: Live, public: bool) -> None:
    base, rt = live
    create_user(rt)
    registered = register_client(rt, public=public)
    verifier = "v" * 50
    query = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": registered.redirect_uri,
        "scope": "openid",
        "state": "s-2",
        "code_challenge": verifier,
        "code_challenge_method": "plain",
    }
    response = Browser(base).http.get(
        base + "/authorize?" + urlencode(query), allow_redirects=False, timeout=10
    )

    got = leaves_to(response, registered.redirect_uri)
    assert got["error"] == "invalid_request"
    assert got["state"] == "s-2" and got["iss"] == base


# 3. PKCE at the token endpoint ------------------------------------------------------------


@pytest.mark.parametrize("public", [True, False])
def test_a_wrong_code_verifier_gets_invalid_grant(live: Live, public: bool) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, public=public))
    code, _, _ = authorize_code(rp, Browser(base))

    response = redeem(rp, code, "w" * 50)

    assert_oauth_error(response, 400, "invalid_grant")
    assert "access_token" not in response.json()


def test_a_missing_code_verifier_is_refused_when_a_challenge_was_sent(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, public=True))
    code, _, _ = authorize_code(rp, Browser(base))

    response = redeem(rp, code, None)

    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_request", "invalid_grant")
    assert "access_token" not in response.json()


# 4. Code replay ---------------------------------------------------------------------------


def test_a_replayed_code_is_refused_and_revokes_what_it_issued(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    code, verifier, _ = authorize_code(rp, Browser(base))
    first = redeem(rp, code, verifier)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert is_active(rp, tokens["access_token"])

    replay = redeem(rp, code, verifier)

    assert_oauth_error(replay, 400, "invalid_grant")
    assert not is_active(rp, tokens["access_token"])
    assert not is_active(rp, tokens["refresh_token"])
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    assert_oauth_error(rp.refresh(tokens["refresh_token"]), 400, "invalid_grant")


# 5. A code belongs to its client ----------------------------------------------------------


def test_another_client_cannot_redeem_a_code_and_does_not_consume_it(live: Live) -> None:
    base, rt = live
    create_user(rt)
    a = RelyingParty(base, register_client(rt, "A"))
    b_registered = register_client(rt, "B", redirect_uri=a.rp.redirect_uri)
    b = RelyingParty(base, b_registered)
    code, verifier, _ = authorize_code(a, Browser(base))

    stolen = redeem(b, code, verifier)

    assert_oauth_error(stolen, 400, "invalid_grant")
    legitimate = redeem(a, code, verifier)
    assert legitimate.status_code == 200, legitimate.text
    assert is_active(a, legitimate.json()["access_token"])


# 6. Refresh token rotation and reuse ------------------------------------------------------


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    tokens, _ = rp.sign_in(Browser(base))
    rotated = rp.refresh(tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert is_active(rp, new["access_token"])

    reuse = rp.refresh(tokens["refresh_token"])

    assert_oauth_error(reuse, 400, "invalid_grant")
    assert not is_active(rp, new["access_token"])
    assert not is_active(rp, new["refresh_token"])
    assert not is_active(rp, tokens["access_token"])
    assert_oauth_error(rp.refresh(new["refresh_token"]), 400, "invalid_grant")


def test_a_refresh_asking_for_less_keeps_the_refresh_tokens_scope(live: Live) -> None:
    """RFC 6749 §6: a narrower scope narrows the access token only; the new refresh token
    has the old one's scope, even when the request left out offline_access."""
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt), scope="openid profile offline_access")
    tokens, _ = rp.sign_in(Browser(base))

    def refresh(token: str, scope: str | None) -> dict[str, Any]:
        data = {"grant_type": "refresh_token", "refresh_token": token}
        if scope is not None:
            data["scope"] = scope
        response = token_request(rp, data)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    narrow = refresh(tokens["refresh_token"], "openid")
    assert narrow["scope"] == "openid"
    assert rp.validate_access_token(narrow["access_token"])["scope"] == "openid"
    assert "refresh_token" in narrow  # the grant goes on

    full = refresh(narrow["refresh_token"], None)
    assert set(full["scope"].split()) == {"openid", "profile", "offline_access"}
    wider_than_last_time = refresh(full["refresh_token"], "openid profile")
    assert wider_than_last_time["scope"] == "openid profile"
    assert_oauth_error(
        token_request(rp, {"grant_type": "refresh_token",
                           "refresh_token": wider_than_last_time["refresh_token"],
                           "scope": "openid email"}),
        400, "invalid_scope")


def test_a_refresh_token_works_only_for_its_own_client(live: Live) -> None:
    base, rt = live
    create_user(rt)
    a = RelyingParty(base, register_client(rt, "A"))
    b = RelyingParty(base, register_client(rt, "B"))
    tokens, _ = a.sign_in(Browser(base))

    assert_oauth_error(b.refresh(tokens["refresh_token"]), 400, "invalid_grant")
    assert a.refresh(tokens["refresh_token"]).status_code == 200


# 7. Client authentication at the token endpoint -------------------------------------------


def test_a_bad_client_secret_gets_401_invalid_client_with_a_challenge(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    code, verifier, _ = authorize_code(rp, Browser(base))
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.rp.redirect_uri,
        "code_verifier": verifier,
    }

    basic = requests.post(
        base + "/token", data=data, auth=(rp.rp.client_id, "wrong-secret"), timeout=10
    )
    post = requests.post(
        base + "/token",
        data={**data, "client_id": rp.rp.client_id, "client_secret": "wrong-secret"},
        timeout=10,
    )
    unknown = requests.post(
        base + "/token", data=data, auth=("no-such-client", "wrong-secret"), timeout=10
    )

    for response in (basic, post, unknown):
        assert_oauth_error(response, 401, "invalid_client")
        assert response.headers.get("WWW-Authenticate", "").startswith("Basic"), response.headers
    # The failed attempts did not consume the code: the real client still gets its tokens.
    assert redeem(rp, code, verifier).status_code == 200


# 8. Bearer tokens at userinfo and introspection -------------------------------------------


def _garbage_tokens(rp: RelyingParty, rt: Runtime, tokens: dict[str, Any]) -> dict[str, str]:
    """Access tokens a resource server must refuse, each wrong in one way only."""
    header, claims = _unverified(tokens["access_token"])
    impostor = RSAKey.generate_key(2048, parameters={"kid": header["kid"]}, private=True)
    with rt.session_factory() as db:
        ours = KeyService.from_settings(db, rt.settings).signing_key("RS256")
        user = create_user(rt, "bob@example.com")
        long_ago = datetime.now(UTC) - timedelta(days=1)
        expired = TokenService(db, KeyService.from_settings(db, rt.settings), rt.settings,
                               clock=lambda: long_ago).issue(
            rp.rp.client_id,
            Principal(user=user, session_id=None, auth_time=int(long_ago.timestamp())),
            "openid profile",
            grant_type="authorization_code",
            include_refresh_token=False,
        )
        db.commit()
    return {
        "random": "not-a-token-" + uuid.uuid4().hex,
        "signed by another key with our kid": jwt.encode(
            {"alg": "RS256", "typ": "at+jwt", "kid": header["kid"]}, claims, impostor
        ),
        "unsigned (alg none)": _b64({"alg": "none", "typ": "at+jwt"}) + "." + _b64(claims) + ".",
        "payload altered": tokens["access_token"].split(".")[0]
        + "."
        + _b64({**claims, "sub": user.id})
        + "."
        + tokens["access_token"].split(".")[2],
        "expired": expired["access_token"],
        "typ JWT instead of at+jwt": jwt.encode(
            {"alg": "RS256", "typ": "JWT", "kid": ours.kid}, claims, ours
        ),
        "an ID token": tokens["id_token"],
    }


def test_userinfo_refuses_bad_tokens_with_a_bearer_invalid_token_challenge(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    tokens, _ = rp.sign_in(Browser(base))
    assert rp.userinfo(tokens["access_token"]).status_code == 200

    for name, bad in _garbage_tokens(rp, rt, tokens).items():
        response = rp.userinfo(bad)
        assert response.status_code == 401, (name, response.text)
        challenge = response.headers.get("WWW-Authenticate", "")
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge, name

    missing = requests.get(base + "/userinfo", timeout=10)
    assert missing.status_code == 401
    challenge = missing.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer") and "error=" not in challenge


def test_a_token_that_is_only_expired_is_accepted_before_it_expires(live: Live) -> None:
    """The control for the expired token above: the same construction, issued now, works."""
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    user = create_user(rt, "bob@example.com")
    with rt.session_factory() as db:
        fresh = TokenService(db, KeyService.from_settings(db, rt.settings), rt.settings).issue(
            rp.rp.client_id,
            Principal(user=user, session_id=None, auth_time=int(time.time())),
            "openid profile",
            grant_type="authorization_code",
            include_refresh_token=False,
        )
        db.commit()
    assert rp.userinfo(fresh["access_token"]).status_code == 200


def test_introspection_reports_bad_tokens_inactive_and_needs_client_auth(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    tokens, _ = rp.sign_in(Browser(base))

    for name, bad in _garbage_tokens(rp, rt, tokens).items():
        response = rp.introspect(bad)
        assert response.status_code == 200, (name, response.text)
        assert response.json() == {"active": False}, name

    anonymous = requests.post(
        base + "/introspect", data={"token": tokens["access_token"]}, timeout=10
    )
    assert_unauthorized_client(anonymous)
    public = register_client(rt, "Mobile", public=True)
    as_public = requests.post(
        base + "/introspect",
        data={"token": tokens["access_token"], "client_id": public.client_id},
        timeout=10,
    )
    assert_unauthorized_client(as_public)
    wrong_secret = requests.post(
        base + "/introspect",
        data={"token": tokens["access_token"]},
        auth=(rp.rp.client_id, "wrong"),
        timeout=10,
    )
    assert_unauthorized_client(wrong_secret)


def assert_unauthorized_client(response: requests.Response) -> None:
    assert response.status_code == 401, (response.status_code, response.text)
    assert response.json()["error"] == "invalid_client"
    assert "active" not in response.json()
    assert response.headers.get("WWW-Authenticate")


def test_another_client_learns_nothing_about_a_token_at_introspection(live: Live) -> None:
    base, rt = live
    create_user(rt)
    a = RelyingParty(base, register_client(rt, "A"))
    b = RelyingParty(base, register_client(rt, "B"))
    tokens, _ = a.sign_in(Browser(base))

    assert b.introspect(tokens["access_token"]).json() == {"active": False}
    assert b.introspect(tokens["refresh_token"]).json() == {"active": False}
    assert is_active(a, tokens["access_token"])


# 9. prompt=none ---------------------------------------------------------------------------


def test_prompt_none_without_a_session_gets_login_required(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    url, state, _, _ = rp.authorization_url(prompt="none")

    response = Browser(base).http.get(url, allow_redirects=False, timeout=10)

    got = leaves_to(response, rp.rp.redirect_uri)
    assert got["error"] == "login_required"
    assert got["state"] == state and got["iss"] == base and "code" not in got


def test_prompt_none_when_consent_is_needed_gets_consent_required(live: Live) -> None:
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    authorize_code(RelyingParty(base, register_client(rt, "Own")), browser)  # signed in
    partner = RelyingParty(base, register_client(rt, "Partner", first_party=False))
    url, state, _, _ = partner.authorization_url(prompt="none")

    response = browser.http.get(url, allow_redirects=False, timeout=10)

    got = leaves_to(response, partner.rp.redirect_uri)
    assert got["error"] == "consent_required"
    assert got["state"] == state and got["iss"] == base and "code" not in got


def test_prompt_none_with_a_session_and_consent_issues_a_code_silently(live: Live) -> None:
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    authorize_code(rp, browser)
    url, state, _, _ = rp.authorization_url(prompt="none")

    got = leaves_to(browser.http.get(url, allow_redirects=False, timeout=10), rp.rp.redirect_uri)

    assert "code" in got and got["state"] == state and got["iss"] == base


# 10. max_age and prompt=login -------------------------------------------------------------


def _age_session(rt: Runtime, browser: Browser, sid: str, seconds: int) -> None:
    """Pretend the browser's sign-in happened ``seconds`` ago."""
    with rt.session_factory() as db:
        db.execute(
            update(UserSession)
            .where(UserSession.id == sid)
            .values(auth_time=datetime.now(UTC) - timedelta(seconds=seconds))
        )
        db.commit()
    token = browser.http.cookies.get("idp_session")
    assert token
    rt.store.client.delete(rt.store.session_key(hash_key(token)))


def _sign_in_on_form(browser: Browser, form: requests.Response) -> requests.Response:
    """Fill in the login form and follow on to where idp sends the browser."""
    assert is_login_form(form), form.text[:300]
    submitted = browser.sign_in_form(form, "alice@example.com", PASSWORD)
    assert submitted.status_code == 303, submitted.text[:300]
    return open_page(browser, urljoin(browser.base, submitted.headers["Location"]))


def test_max_age_exceeded_sends_the_user_back_to_the_login_form(live: Live) -> None:
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    first, nonce = rp.sign_in(browser)
    old = rp.validate_id_token(first["id_token"], nonce)

    # Within max_age: no form, a code at once, the same auth_time.
    url, state, nonce, verifier = rp.authorization_url(max_age="600")
    got = leaves_to(open_page(browser, url), rp.rp.redirect_uri)
    same = rp.validate_id_token(rp.exchange(got["code"], verifier)["id_token"], nonce)
    assert same["auth_time"] == old["auth_time"]

    _age_session(rt, browser, old["sid"], 3600)
    url, state, nonce, verifier = rp.authorization_url(max_age="600")
    form = open_page(browser, url)

    assert is_login_form(form)
    before = int(time.time())
    got = leaves_to(_sign_in_on_form(browser, form), rp.rp.redirect_uri)
    assert got["state"] == state and got["iss"] == base
    claims = rp.validate_id_token(rp.exchange(got["code"], verifier)["id_token"], nonce)
    assert claims["auth_time"] >= before - 1
    assert claims["sid"] != old["sid"]


def test_max_age_zero_always_asks_for_the_password(live: Live) -> None:
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    rp.sign_in(browser)
    url, state, nonce, verifier = rp.authorization_url(max_age="0")

    form = open_page(browser, url)

    assert is_login_form(form)
    got = leaves_to(_sign_in_on_form(browser, form), rp.rp.redirect_uri)
    assert got["state"] == state
    claims = rp.validate_id_token(rp.exchange(got["code"], verifier)["id_token"], nonce)
    assert claims["auth_time"] >= int(time.time()) - 30


def test_max_age_exceeded_with_prompt_none_gets_login_required(live: Live) -> None:
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    first, nonce = rp.sign_in(browser)
    _age_session(rt, browser, rp.validate_id_token(first["id_token"], nonce)["sid"], 3600)
    url, state, _, _ = rp.authorization_url(max_age="600", prompt="none")

    got = leaves_to(browser.http.get(url, allow_redirects=False, timeout=10), rp.rp.redirect_uri)

    assert got["error"] == "login_required" and got["state"] == state and got["iss"] == base


@pytest.mark.parametrize("max_age", ["-1", "soon", "1.5", "\u00b2", "9" * 5000])
def test_a_malformed_max_age_gets_invalid_request(live: Live, max_age: str) -> None:
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    rp.sign_in(browser)
    url, state, _, _ = rp.authorization_url(max_age=max_age)

    got = leaves_to(browser.http.get(url, allow_redirects=False, timeout=10), rp.rp.redirect_uri)

    assert got["error"] == "invalid_request" and got["state"] == state and got["iss"] == base
    assert "code" not in got


@pytest.mark.parametrize("prompt", ["login", "select_account"])
def test_prompt_login_shows_the_form_although_signed_in(live: Live, prompt: str) -> None:
    """``select_account`` too: a browser holds one account, choosing is signing in again."""
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    first, nonce = rp.sign_in(browser)
    old = rp.validate_id_token(first["id_token"], nonce)
    url, state, nonce, verifier = rp.authorization_url(prompt=prompt)

    form = open_page(browser, url)

    assert is_login_form(form)
    got = leaves_to(_sign_in_on_form(browser, form), rp.rp.redirect_uri)
    assert got["state"] == state and got["iss"] == base
    claims = rp.validate_id_token(rp.exchange(got["code"], verifier)["id_token"], nonce)
    assert claims["sid"] != old["sid"]
    assert claims["auth_time"] >= old["auth_time"]


@pytest.mark.parametrize("fresh", [{"prompt": "login"}, {"max_age": "0"}])
def test_a_signed_out_user_asked_for_a_fresh_sign_in_signs_in_once(
    live: Live, fresh: dict[str, str]
) -> None:
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    url, state, nonce, verifier = rp.authorization_url(**fresh)

    before = int(time.time())
    got = leaves_to(_sign_in_on_form(browser, open_page(browser, url)), rp.rp.redirect_uri)

    assert got["state"] == state and "code" in got, got
    claims = rp.validate_id_token(rp.exchange(got["code"], verifier)["id_token"], nonce)
    assert claims["auth_time"] >= before - 1
    assert count(rt, UserSession) == 1  # one sign-in, no session replaced by a second one


# 14. Consent ------------------------------------------------------------------------------


def test_a_partner_client_asks_for_consent_and_deny_returns_access_denied(live: Live) -> None:
    base, rt = live
    user = create_user(rt)
    partner = RelyingParty(base, register_client(rt, "Partner", first_party=False))
    browser = Browser(base)
    url, state, _, _ = partner.authorization_url()

    page = _sign_in_on_form(browser, open_page(browser, url))
    assert is_consent_page(page)
    assert "Partner" in page.text

    denied = browser.follow(url, consent="deny")
    got = leaves_to(denied, partner.rp.redirect_uri)
    assert got["error"] == "access_denied"
    assert got["state"] == state and got["iss"] == base and "code" not in got
    assert count(rt, Consent, Consent.user_id == user.id) == 0
    assert is_consent_page(open_page(browser, partner.authorization_url()[0]))


def test_consent_is_remembered_until_prompt_consent_asks_again(live: Live) -> None:
    base, rt = live
    create_user(rt)
    partner = RelyingParty(base, register_client(rt, "Partner", first_party=False))
    partner.sign_in(Browser(base))  # signs in and allows

    second = Browser(base)
    url, state, _, _ = partner.authorization_url()
    got = leaves_to(_sign_in_on_form(second, open_page(second, url)), partner.rp.redirect_uri)
    assert "code" in got and got["state"] == state

    again = open_page(second, partner.authorization_url(prompt="consent")[0])
    assert is_consent_page(again)

    wider = RelyingParty(base, partner.rp, scope="openid profile")
    assert "code" in leaves_to(open_page(second, wider.authorization_url()[0]),
                               partner.rp.redirect_uri)


def test_the_consent_form_needs_a_signed_in_user_and_its_csrf_token(live: Live) -> None:
    base, rt = live
    create_user(rt)
    partner = RelyingParty(base, register_client(rt, "Partner", first_party=False))
    browser = Browser(base)
    url, _, _, _ = partner.authorization_url()
    page = _sign_in_on_form(browser, open_page(browser, url))
    assert is_consent_page(page)
    fields = dict(parse_qs(urlsplit(url).query))
    data = {k: v[0] for k, v in fields.items()} | {"decision": "allow"}

    forged = browser.http.post(
        base + "/authorize/consent", data=data, allow_redirects=False, timeout=10
    )

    assert forged.status_code in (400, 403)
    assert not forged.headers.get("Location", "").startswith(partner.rp.redirect_uri)


# 15. Scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["openid email", "openid profile admin", "openid offline_access"])
def test_a_scope_the_client_may_not_have_gets_invalid_scope(live: Live, scope: str) -> None:
    base, rt = live
    create_user(rt)
    limited = register_client(rt, "Limited", scopes="openid profile")
    rp = RelyingParty(base, limited, scope=scope)
    url, state, _, _ = rp.authorization_url()

    for browser in (Browser(base), _signed_in(base, rt)):
        got = leaves_to(browser.http.get(url, allow_redirects=False, timeout=10),
                        limited.redirect_uri)
        assert got["error"] == "invalid_scope", got
        assert got["state"] == state and got["iss"] == base and "code" not in got


def _signed_in(base: str, rt: Runtime) -> Browser:
    browser = Browser(base)
    authorize_code(RelyingParty(base, register_client(rt, "Own")), browser)
    return browser


def test_an_unknown_scope_gets_invalid_scope(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt), scope="openid superpowers")
    url, state, _, _ = rp.authorization_url()

    got = leaves_to(Browser(base).http.get(url, allow_redirects=False, timeout=10),
                    rp.rp.redirect_uri)

    assert got["error"] == "invalid_scope"
    assert got["state"] == state and got["iss"] == base


# 16. Token endpoint errors ----------------------------------------------------------------


def test_token_endpoint_errors_name_the_problem_and_are_never_cached(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))

    unsupported = token_request(rp, {"grant_type": "password", "username": "a", "password": "b"})
    assert_oauth_error(unsupported, 400, "unsupported_grant_type")
    made_up = token_request(rp, {"grant_type": "urn:example:magic"})
    assert_oauth_error(made_up, 400, "unsupported_grant_type")
    missing_code = token_request(
        rp, {"grant_type": "authorization_code", "redirect_uri": rp.rp.redirect_uri}
    )
    assert_oauth_error(missing_code, 400, "invalid_request")
    unknown_code = redeem(rp, "no-such-code", "v" * 50)
    assert_oauth_error(unknown_code, 400, "invalid_grant")
    missing_refresh = token_request(rp, {"grant_type": "refresh_token"})
    assert_oauth_error(missing_refresh, 400, "invalid_request")

    code, verifier, _ = authorize_code(rp, Browser(base))
    wrong_redirect = token_request(rp, {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": rp.rp.redirect_uri + "/other",
    })
    assert_oauth_error(wrong_redirect, 400, "invalid_grant")

    code, verifier, _ = authorize_code(rp, Browser(base))
    success = redeem(rp, code, verifier)
    assert success.status_code == 200
    assert "no-store" in success.headers["Cache-Control"]


# 18. Client credentials -------------------------------------------------------------------


def test_a_confidential_client_gets_a_token_for_itself_by_client_credentials(
    live: Live,
) -> None:
    base, rt = live
    service = RelyingParty(base, register_client(rt, "Batch"))

    response = token_request(service, {"grant_type": "client_credentials"})

    assert response.status_code == 200, response.text
    assert "no-store" in response.headers["Cache-Control"]
    body = response.json()
    assert "refresh_token" not in body and "id_token" not in body
    claims = service.validate_access_token(body["access_token"])
    assert claims["sub"] == service.rp.client_id
    introspected = service.introspect(body["access_token"]).json()
    assert introspected["active"] is True and introspected["sub"] == service.rp.client_id
    # It is not a user's token: userinfo has nobody to describe.
    assert service.userinfo(body["access_token"]).status_code in (401, 403)


def test_client_credentials_grant_only_the_scopes_the_client_was_registered_with(
    live: Live,
) -> None:
    base, rt = live
    reports = RelyingParty(base, register_client(rt, "Reports", scopes="openid profile"))
    secret = reports.rp.client_secret
    assert secret is not None

    for scope in ("openid email", "profile offline_access", "openid profile email"):
        by_basic = token_request(reports, {"grant_type": "client_credentials", "scope": scope})
        by_post = requests.post(base + "/token", timeout=10, data={
            "grant_type": "client_credentials", "scope": scope,
            "client_id": reports.rp.client_id, "client_secret": secret})
        for refused in (by_basic, by_post):
            assert_oauth_error(refused, 400, "invalid_scope")
            assert "access_token" not in refused.json()

    granted = token_request(reports, {"grant_type": "client_credentials", "scope": "profile"})
    assert granted.status_code == 200, granted.text
    claims = reports.validate_access_token(granted.json()["access_token"])
    assert claims["scope"] == "profile"
    assert len(events(rt, EventTag.TOKEN_GRANTED)) == 1  # the refusals wrote nothing


def test_a_public_client_cannot_use_client_credentials(live: Live) -> None:
    base, rt = live
    mobile = RelyingParty(base, register_client(rt, "Mobile", public=True))

    response = token_request(mobile, {"grant_type": "client_credentials"})

    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] in ("unauthorized_client", "invalid_client")
    assert "access_token" not in response.json()


# 19. Issuer identification ----------------------------------------------------------------


def test_every_authorization_response_carries_the_issuer_once(live: Live) -> None:
    base, rt = live
    create_user(rt)
    own = RelyingParty(base, register_client(rt))
    partner = RelyingParty(base, register_client(rt, "Partner", first_party=False))
    limited = RelyingParty(
        base, register_client(rt, "Limited", scopes="openid"), scope="openid email"
    )
    browser = Browser(base)

    responses = {
        "login_required": browser.http.get(
            own.authorization_url(prompt="none")[0], allow_redirects=False, timeout=10
        ),
        "success": browser.follow(own.authorization_url()[0]),
        "consent_required": browser.http.get(
            partner.authorization_url(prompt="none")[0], allow_redirects=False, timeout=10
        ),
        "access_denied": browser.follow(partner.authorization_url()[0], consent="deny"),
        "consented": browser.follow(partner.authorization_url()[0], consent="allow"),
        "invalid_scope": browser.http.get(
            limited.authorization_url()[0], allow_redirects=False, timeout=10
        ),
        "unsupported_response_type": browser.http.get(
            own.authorization_url(response_type="token")[0], allow_redirects=False, timeout=10
        ),
    }

    for name, response in responses.items():
        assert response.status_code in (302, 303), (name, response.status_code)
        params = all_params(response)
        assert params.get("iss") == [base], (name, response.headers["Location"])
        if name not in ("success", "consented"):
            assert params["error"] == [name], (name, params)


def test_discovery_names_the_issuer_exactly_and_every_endpoint(live: Live) -> None:
    base, _ = live
    response = requests.get(base + "/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    meta = response.json()

    assert meta["issuer"] == base
    assert meta["authorization_response_iss_parameter_supported"] is True
    endpoints = {
        "authorization_endpoint": "GET",
        "token_endpoint": "POST",
        "userinfo_endpoint": "GET",
        "jwks_uri": "GET",
        "introspection_endpoint": "POST",
        "revocation_endpoint": "POST",
        "end_session_endpoint": "GET",
    }
    for name, method in endpoints.items():
        url = meta[name]
        assert url.startswith(base + "/"), (name, url)
        answer = requests.request(method, url, allow_redirects=False, timeout=10)
        assert answer.status_code not in (404, 405) and answer.status_code < 500, (name, answer)
    assert "S256" in meta["code_challenge_methods_supported"]
    assert "plain" not in meta["code_challenge_methods_supported"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["scopes_supported"]) >= {"openid", "profile", "email", "offline_access"}
    keys = requests.get(meta["jwks_uri"], timeout=10).json()["keys"]
    assert keys and all("d" not in key for key in keys)
