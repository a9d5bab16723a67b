"""A relying service signs a user in through idp with authlib's client (code + PKCE), validates
the tokens against the JWKS, and uses userinfo, refresh, introspection, revocation and logout."""

from __future__ import annotations

import re

import requests

from idp.runtime import Runtime
from tests.helpers import create_user
from tests.oidc import Browser, RelyingParty, register_client


def test_full_code_flow_with_pkce(live: tuple[str, Runtime]) -> None:
    base, rt = live
    user = create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    token, nonce = rp.sign_in(Browser(base))
    claims = rp.validate_id_token(token["id_token"], nonce)
    assert claims["sub"] == user.id
    assert claims["sid"] and claims["auth_time"] and claims["amr"] == ["pwd"]
    assert claims["email"] == "alice@example.com"
    at = rp.validate_access_token(token["access_token"])
    assert at["sub"] == user.id and at["sid"] == claims["sid"]
    assert rp.userinfo(token["access_token"]).json()["email"] == "alice@example.com"
    assert rp.introspect(token["access_token"]).json()["active"] is True
    refreshed = rp.refresh(token["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != token["refresh_token"]
    assert rp.revoke(refreshed.json()["refresh_token"]).status_code == 200
    assert rp.introspect(refreshed.json()["access_token"]).json()["active"] is False
    assert requests.get(base + "/healthz", timeout=5).status_code == 200


def test_user_revokes_an_application_from_the_account_page(live: tuple[str, Runtime]) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, "Photo Print", first_party=False))
    browser = Browser(base)
    token, _ = rp.sign_in(browser)
    page = browser.http.get(base + "/account", timeout=5).text
    assert "Photo Print" in page and "Revoke access" in page
    form = re.search(r'action="(/account/applications/[^"]+/revoke)".*?name="csrf_token" '
                     r'value="([^"]+)"', page, re.S)
    assert form is not None
    done = browser.http.post(base + form.group(1), data={"csrf_token": form.group(2)},
                             timeout=5, allow_redirects=False)
    assert done.status_code == 303
    assert "No application has access" in browser.http.get(base + "/account", timeout=5).text
    assert rp.introspect(token["access_token"]).json() == {"active": False}
    assert rp.refresh(token["refresh_token"]).json()["error"] == "invalid_grant"
    # Signing in to it again asks for consent again.
    url, _, _, _ = rp.authorization_url()
    assert 'name="decision"' in browser.http.get(url, timeout=5).text


def test_a_client_can_choose_es256_id_tokens(live: tuple[str, Runtime]) -> None:
    from joserfc import jwt

    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, id_token_alg="ES256"))
    assert "ES256" in rp.metadata["id_token_signing_alg_values_supported"]
    token, nonce = rp.sign_in(Browser(base))
    decoded = jwt.decode(token["id_token"], rp.keyset(), algorithms=["ES256"])
    assert decoded.header["alg"] == "ES256"
    assert decoded.claims["nonce"] == nonce
    # The access token stays RS256 (RFC 9068 §2.1).
    assert rp.validate_access_token(token["access_token"])["sub"]
